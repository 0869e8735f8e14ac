import os

from backends import contract as c
from backends.classes import ClassTable
from backends.packing import pack, pack_bytes
from backends.polygons import EMPTY_POLYGON
from backends.postprocess import postprocess_reference
from backends.triton_model import input_array, model_parameter, output_tensor, respond_each


class TritonPythonModel:
    def initialize(self, args):
        model_dir = os.path.join(args["model_repository"], args["model_version"])
        self.classes = ClassTable.load(os.path.join(model_dir, c.CLASSES_FILE))
        self.score_threshold = float(model_parameter(args, "score_threshold"))
        self.num_select = int(model_parameter(args, "num_select"))

    def _handle(self, request):
        height, width = (int(v) for v in input_array(request, c.IMAGE_SIZE))
        result = postprocess_reference(
            input_array(request, c.DETS)[0],
            input_array(request, c.LABELS)[0],
            input_array(request, c.MASKS)[0],
            (height, width),
            self.num_select,
            self.score_threshold,
            self.classes,
        )
        names, name_offsets = pack_bytes([name.encode() for name in result.class_names])
        rles, rle_offsets = pack_bytes(result.rle_counts)
        points, point_offsets = pack(result.polygons, EMPTY_POLYGON)
        return [
            output_tensor(c.BOXES, result.boxes),
            output_tensor(c.SCORES, result.scores),
            output_tensor(c.CLASS_IDS, result.class_ids),
            output_tensor(c.CLASS_NAMES, names),
            output_tensor(c.CLASS_NAME_OFFSETS, name_offsets),
            output_tensor(c.RLE_COUNTS, rles),
            output_tensor(c.RLE_OFFSETS, rle_offsets),
            output_tensor(c.POLYGON_POINTS, points),
            output_tensor(c.POLYGON_OFFSETS, point_offsets),
        ]

    def execute(self, requests):
        return respond_each(requests, self._handle)
