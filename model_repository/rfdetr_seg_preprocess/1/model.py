from backends.contract import IMAGE
from backends.errors import InvalidRequestError
from backends.frames import check_frame
from backends.preprocess_stage import start_preprocess_stage
from backends.triton_model import input_tensor, serve_batch


class TritonPythonModel:
    def initialize(self, args):
        self.stage = start_preprocess_stage(args)

    def _read(self, request):
        image = input_tensor(request, IMAGE)
        if len(image) != 1:
            raise InvalidRequestError(f"send one frame per request ([1, H, W, 3]), got {len(image)}")
        # Checked per request, so a bad frame fails alone, before the batched call.
        check_frame(image.shape[1:], image.dtype)
        return image[0]

    def execute(self, requests):
        return serve_batch(requests, self._read, self.stage.run)
