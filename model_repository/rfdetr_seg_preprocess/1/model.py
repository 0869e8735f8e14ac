import numpy as np
import triton_python_backend_utils as pb_utils

from backends.contract import ENGINE_INPUT, IMAGE, IMAGE_SIZE
from backends.preprocess import preprocess_reference
from backends.triton_model import model_parameter, respond_each


class TritonPythonModel:
    def initialize(self, args):
        self.resolution = int(model_parameter(args, "resolution"))

    def _handle(self, request):
        image = pb_utils.get_input_tensor_by_name(request, IMAGE).as_numpy()
        return [
            pb_utils.Tensor(ENGINE_INPUT, preprocess_reference(image, self.resolution)),
            pb_utils.Tensor(IMAGE_SIZE, np.array(image.shape[:2], dtype=np.int32)),
        ]

    def execute(self, requests):
        return respond_each(requests, self._handle)
