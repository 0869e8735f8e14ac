"""Host frames -> the GPU through one reusable pinned staging buffer.

A frame the python backend hands over in host memory (a client's system shared memory or plain
gRPC) sits in the stub's shared memory, which is pageable: `frame.to("cuda")` from there is a
synchronous copy that the driver stages through small pinned buffers of its own, one frame after
another. Measured on the H200 host in the served ensemble: 53.6 ms per batch of 14 1080p frames
(1.6 GB/s), the preprocess stage's whole compute time. Here the batch's pixels are first copied
into one pinned buffer (torch's CPU copy, on several threads), then cross to the GPU in one
asynchronous copy, and each frame becomes a view of the device buffer.
"""

from __future__ import annotations

import torch


class PinnedUpload:
    """Uploads a batch of uint8 frames to one CUDA device; reuses its pinned buffer.

    The buffer is rewritten only after the previous batch's copy out of it has run (an event
    recorded after that copy), so a batch still in flight is never overwritten.
    """

    def __init__(self, device: torch.device):
        if device.type != "cuda":
            raise ValueError(f"PinnedUpload copies to a CUDA device, got {device}")
        self.device = device
        self._staging = torch.empty(0, dtype=torch.uint8)
        self._copied: torch.cuda.Event | None = None

    def __call__(self, frames: list[torch.Tensor]) -> list[torch.Tensor]:
        """The frames on the device, in order: host frames copied, device frames as they are.

        Raises:
            ValueError: a host frame is not uint8 (the staging buffer holds pixels), naming it.
        """
        on_host = [i for i, frame in enumerate(frames) if frame.device.type == "cpu"]
        if not on_host:
            return list(frames)
        for i in on_host:
            if frames[i].dtype != torch.uint8:
                raise ValueError(f"frame {i} is {frames[i].dtype}; frames are uint8 pixels")
        sizes = [frames[i].numel() for i in on_host]
        total = sum(sizes)
        if self._copied is not None:
            self._copied.synchronize()
        if self._staging.numel() < total:
            self._staging = torch.empty(total, dtype=torch.uint8, pin_memory=True)
        uploaded = list(frames)
        offset = 0
        for i, size in zip(on_host, sizes):
            self._staging[offset : offset + size].view(frames[i].shape).copy_(frames[i])
            offset += size
        with torch.cuda.device(self.device):
            on_device = torch.empty(total, dtype=torch.uint8, device=self.device)
            on_device.copy_(self._staging[:total], non_blocking=True)
            self._copied = torch.cuda.Event()
            self._copied.record()
        offset = 0
        for i, size in zip(on_host, sizes):
            uploaded[i] = on_device[offset : offset + size].view(frames[i].shape)
            offset += size
        return uploaded
