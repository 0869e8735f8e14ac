import os

import numpy as np
import triton_python_backend_utils as pb_utils

from backends import contract as c
from backends.classes import ClassTable
from backends.polygons import pack_polygons
from backends.postprocess import postprocess_reference
from backends.triton_model import model_parameter, respond_each


class TritonPythonModel:
    def initialize(self, args):
        model_dir = os.path.join(args["model_repository"], args["model_version"])
        self.classes = ClassTable.load(os.path.join(model_dir, c.CLASSES_FILE))
        self.score_threshold = float(model_parameter(args, "score_threshold"))
        self.num_select = int(model_parameter(args, "num_select"))

    def _handle(self, request):
        def tensor(name):
            return pb_utils.get_input_tensor_by_name(request, name).as_numpy()

        height, width = (int(v) for v in tensor(c.IMAGE_SIZE))
        result = postprocess_reference(
            tensor(c.DETS)[0],
            tensor(c.LABELS)[0],
            tensor(c.MASKS)[0],
            (height, width),
            self.num_select,
            self.score_threshold,
            self.classes,
        )
        points, offsets = pack_polygons(result.polygons)
        return [
            pb_utils.Tensor(c.BOXES, result.boxes),
            pb_utils.Tensor(c.SCORES, result.scores),
            pb_utils.Tensor(c.CLASS_IDS, result.class_ids),
            pb_utils.Tensor(c.CLASS_NAMES, np.array([n.encode() for n in result.class_names], dtype=object)),
            pb_utils.Tensor(c.RLE_COUNTS, np.array(result.rle_counts, dtype=object)),
            pb_utils.Tensor(c.POLYGON_POINTS, points),
            pb_utils.Tensor(c.POLYGON_OFFSETS, offsets),
        ]

    def execute(self, requests):
        return respond_each(requests, self._handle)
