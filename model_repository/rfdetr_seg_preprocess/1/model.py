import numpy as np

from backends.contract import ENGINE_INPUT, IMAGE, IMAGE_SIZE
from backends.preprocess import preprocess_reference
from backends.triton_model import input_array, model_parameter, output_tensor, respond_each


class TritonPythonModel:
    def initialize(self, args):
        self.resolution = int(model_parameter(args, "resolution"))

    def _handle(self, request):
        image = input_array(request, IMAGE)
        return [
            output_tensor(ENGINE_INPUT, preprocess_reference(image, self.resolution)),
            output_tensor(IMAGE_SIZE, np.array(image.shape[:2], dtype=np.int32)),
        ]

    def execute(self, requests):
        return respond_each(requests, self._handle)
