"""backends.host_upload: which host memory gets registered with CUDA, once per mapping, and the
upload itself on a GPU."""

import mmap
import os
import uuid

import pytest
import torch

from backends.host_upload import PinnedMappings, shared_mapping, upload


@pytest.fixture
def shm_tensor():
    """A uint8 tensor over a real /dev/shm file mapping, as the python backend's stub has them."""
    path = f"/dev/shm/test_host_upload_{uuid.uuid4().hex}"
    fd = os.open(path, os.O_CREAT | os.O_RDWR)
    try:
        os.ftruncate(fd, 4 * mmap.PAGESIZE)
        region = mmap.mmap(fd, 4 * mmap.PAGESIZE)
    finally:
        os.close(fd)
        os.unlink(path)
    tensor = torch.frombuffer(region, dtype=torch.uint8)
    tensor[:] = torch.arange(len(tensor)) % 251
    yield tensor
    del tensor
    region.close()


def test_shared_mapping_finds_the_dev_shm_mapping_holding_an_address(shm_tensor):
    start, end = shared_mapping(shm_tensor[100:].data_ptr())
    assert start <= shm_tensor.data_ptr() and shm_tensor.data_ptr() + len(shm_tensor) <= end


def test_shared_mapping_leaves_out_ordinary_memory():
    assert shared_mapping(torch.zeros(1 << 20, dtype=torch.uint8).data_ptr()) is None


def test_shared_mapping_reads_the_maps_format(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f0000000000-7f0000100000 rw-s 00000000 00:1a 42   /dev/shm/triton_python_backend_shm_region_1\n"
        "7f0000100000-7f0000200000 rw-p 00000000 00:00 0 \n"
        "7f0000200000-7f0000300000 r--p 00000000 08:01 7    /usr/lib/libc.so.6\n"
    )
    assert shared_mapping(0x7F0000000800, maps) == (0x7F0000000000, 0x7F0000100000)
    assert shared_mapping(0x7F0000100800, maps) is None  # anonymous
    assert shared_mapping(0x7F0000200800, maps) is None  # a file outside /dev/shm
    assert shared_mapping(0x10, maps) is None  # unmapped


def test_a_mapping_is_registered_once_whole(shm_tensor, log_lines):
    registered = []

    def fake_register(start, size):  # stands in for cudaHostRegister in this unit test
        registered.append((start, size))

    pinned = PinnedMappings(register=fake_register)
    assert pinned.pin(shm_tensor[:10]) and pinned.pin(shm_tensor[-10:])
    (start, size), = registered
    assert (start, start + size) == shared_mapping(shm_tensor.data_ptr())
    assert len(log_lines) == 1 and "registered" in log_lines[0]


def test_ordinary_memory_is_never_registered(log_lines):
    def fake_register(start, size):  # must not be reached
        raise AssertionError("registered memory outside /dev/shm")

    assert not PinnedMappings(register=fake_register).pin(torch.zeros(1000))
    assert log_lines == []


def test_a_refused_mapping_is_logged_once_and_not_tried_again(shm_tensor, log_lines):
    attempts = []

    def fake_register(start, size):  # a driver refusing, as under a locked-memory limit
        attempts.append(start)
        return "cudaErrorMemoryAllocation"

    pinned = PinnedMappings(register=fake_register)
    assert not pinned.pin(shm_tensor) and not pinned.pin(shm_tensor[5:])
    assert len(attempts) == 1
    assert len(log_lines) == 1 and "left pageable" in log_lines[0] and "cudaErrorMemoryAllocation" in log_lines[0]


def test_upload_to_the_cpu_is_the_tensor_itself(shm_tensor):
    assert upload(shm_tensor, torch.device("cpu")) is shm_tensor


@pytest.mark.skipif(not torch.cuda.is_available(), reason="registering host memory needs a CUDA device")
def test_upload_registers_shared_memory_and_copies_it_exactly(shm_tensor, log_lines):
    assert not shm_tensor.is_pinned()
    on_gpu = upload(shm_tensor, torch.device("cuda"))
    torch.cuda.current_stream().synchronize()
    assert shm_tensor.is_pinned()  # the driver now sees the mapping as page-locked
    assert torch.equal(on_gpu.cpu(), shm_tensor)
    heap = torch.arange(1000, dtype=torch.float32)
    assert torch.equal(upload(heap, torch.device("cuda")).cpu(), heap) and not heap.is_pinned()


def test_outside_a_stub_the_log_lines_go_to_python_logging(caplog):
    from backends.server_log import log_info

    with caplog.at_level("INFO", logger="backends.server_log"):
        log_info("shared memory registered")
    assert caplog.messages == ["shared memory registered"]
