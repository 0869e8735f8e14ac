from backends.contract import JPEG
from backends.errors import InvalidRequestError
from backends.preprocess_stage import jpeg_decoder, start_preprocess_stage
from backends.triton_model import input_tensor, serve_batch


class TritonPythonModel:
    def initialize(self, args):
        self.stage = start_preprocess_stage(args, jpeg_decoder(args))

    def _read(self, request):
        file = input_tensor(request, JPEG)
        if file.dim() != 2 or len(file) != 1:
            raise InvalidRequestError(f"send one JPEG file per request ([1, N] bytes), got shape {list(file.shape)}")
        return file[0]

    def execute(self, requests):
        return serve_batch(requests, self._read, self.stage.run)
