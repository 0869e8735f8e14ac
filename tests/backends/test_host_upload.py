"""backends.host_upload: host frames reach the GPU through one reused pinned buffer, unchanged."""

from __future__ import annotations

import pytest
import torch

from backends.host_upload import PinnedUpload

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="pinned staging copies to a CUDA device")


def test_refuses_a_cpu_device():
    with pytest.raises(ValueError, match="copies to a CUDA device, got cpu"):
        PinnedUpload(torch.device("cpu"))


def frames(seed: int, sizes=((1080, 1920), (7, 5), (720, 1280))) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=generator) for h, w in sizes]


@needs_cuda
def test_every_frame_arrives_unchanged_and_device_frames_pass_through():
    upload = PinnedUpload(torch.device("cuda"))
    host = frames(0)
    already = torch.full((4, 4, 3), 9, dtype=torch.uint8, device="cuda")
    got = upload([host[0], already, host[1], host[2]])
    assert got[1] is already
    for sent, arrived in zip(host, [got[0], got[2], got[3]]):
        assert arrived.device.type == "cuda" and arrived.shape == sent.shape
        assert torch.equal(arrived.cpu(), sent)


@needs_cuda
def test_a_later_batch_overwrites_no_frame_still_in_use():
    upload = PinnedUpload(torch.device("cuda"))
    first_sent, second_sent = frames(1), frames(2, sizes=((2160, 3840),))  # the buffer grows
    first = upload(first_sent)
    second = upload(second_sent)
    third = upload(frames(3))  # reuses the grown buffer while `second` may still be copying
    assert all(torch.equal(a.cpu(), b) for a, b in zip(first, first_sent))
    assert torch.equal(second[0].cpu(), second_sent[0])
    assert len(third) == 3


@needs_cuda
def test_a_frame_that_is_no_pixels_is_named():
    with pytest.raises(ValueError, match="frame 1 is torch.float32"):
        PinnedUpload(torch.device("cuda"))([frames(0)[0], torch.zeros(2, 2, 3)])
