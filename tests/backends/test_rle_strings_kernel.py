"""backends.rle_strings_kernel against pycocotools: the strings of masks given as their runs.

The interpreter runs small masks of every awkward shape (few, large blocks: each program step
costs milliseconds there); with a CUDA device, full frames too.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernels are defined

import numpy as np
import pytest

from backends.mask_region_kernel import DET_FIELDS, DET_FRAME, Frames, MaskRegions
from backends.rle import encode_mask
from backends.rle_kernel import MaskToggles
from backends.rle_strings_kernel import chunks_for, coco_strings
from tests.backends.runs import mask_runs, sample_masks

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")


def batch_of(
    frames: list[list[np.ndarray]], device: torch.device, *, unused_rows: int = 0, spare: int = 5
) -> tuple[MaskToggles, MaskRegions, Frames]:
    """Frames of masks (frame b's masks all of its size) as the RLE kernel leaves them on the
    device: toggles with `spare` room left, and `unused_rows` rows past the used ones (their
    table rows hold garbage, their ends repeat the last one)."""
    sizes = [masks[0].shape if masks else (1, 1) for masks in frames]
    runs = [mask_runs(m) for masks in frames for m in masks]
    used = len(runs)
    flat = np.concatenate([np.zeros(0, np.int64), *runs]).astype(np.int32)
    capacity = len(flat) + spare
    toggles = np.full(max(capacity, 1), -7, np.int32)
    toggles[: len(flat)] = flat
    ends = np.cumsum([len(r) for r in runs] + [0] * unused_rows).astype(np.int32)
    table = np.full((used + unused_rows, DET_FIELDS), 1 << 20, np.int32)
    table[:used, DET_FRAME] = np.repeat(np.arange(len(frames)), [len(m) for m in frames])
    counts = np.array([len(m) for m in frames], np.int32)
    regions = MaskRegions(
        torch.from_numpy(table).to(device),
        torch.zeros((len(table), 4), dtype=torch.int32, device=device),
        torch.from_numpy(counts).to(device),
    )
    as_device = MaskToggles(torch.from_numpy(toggles).to(device), torch.from_numpy(ends).to(device), None, capacity)
    return as_device, regions, Frames.build(sizes, (20, 20), device)


def strings_of(toggles: MaskToggles, regions: MaskRegions, frames: Frames, **options) -> list[bytes]:
    rows = int(regions.counts.sum())
    strings = coco_strings(toggles, regions, frames, **options)
    total = int(strings.total[0])
    assert total <= strings.capacity
    offsets = strings.offsets[: rows + 1].cpu().numpy()
    assert offsets[0] == 0 and offsets[-1] == total
    blob = strings.chars[:total].cpu().numpy().tobytes()
    return [blob[offsets[i] : offsets[i + 1]] for i in range(rows)]


def by_size(masks: list[np.ndarray]) -> list[list[np.ndarray]]:
    frames: dict[tuple[int, int], list[np.ndarray]] = {}
    for mask in masks:
        frames.setdefault(mask.shape, []).append(mask)
    return list(frames.values())


@pytest.mark.parametrize("block", [None, 256], ids=["one-block", "many-blocks"])
def test_byte_identical_to_pycocotools(block):
    """Masks spread over frames of six sizes, rows past the used ones; with small blocks, masks
    straddle blocks."""
    frames = by_size(sample_masks(np.random.default_rng(0)))
    args = batch_of(frames, DEVICE, unused_rows=3)
    assert strings_of(*args, block=block) == [encode_mask(m) for masks in frames for m in masks]


def test_long_counts_and_negative_deltas():
    """Counts of several characters, and deltas c_i - c_(i-2) of both signs and every length."""
    height, width = 613, 401
    mask = np.zeros((height, width), bool)
    rng = np.random.default_rng(4)
    for x in range(0, width, 7):
        top, length = rng.integers(0, height, 2)
        mask[top : top + length, x] = True
    mask[:, 200:203] = True  # runs over whole columns: one long run across the joins
    mask[-1, -1] = True  # the mask ends inside a run: no final zeros count
    assert strings_of(*batch_of([[mask, ~mask]], DEVICE)) == [encode_mask(mask), encode_mask(~mask)]


def test_no_detection():
    toggles, regions, frames = batch_of([[], []], DEVICE, unused_rows=4)
    strings = coco_strings(toggles, regions, frames)
    assert int(strings.total[0]) == 0 and int(strings.offsets[0]) == 0
    empty = MaskRegions(regions.table[:0], regions.regions[:0], regions.counts)
    none = coco_strings(MaskToggles(toggles.toggles, toggles.ends[:0], None, toggles.capacity), empty, frames)
    assert none.offsets.tolist() == [0] and int(none.total[0]) == 0


def test_chunks_bound_every_value():
    assert [chunks_for(a) for a in (1, 15, 16, 511, 512, 1080 * 1920, 2**31 - 1)] == [1, 1, 2, 2, 3, 5, 7]


def test_rejects_bad_arguments():
    toggles, regions, frames = batch_of([[np.ones((3, 4), bool)]], DEVICE)
    with pytest.raises(ValueError, match="power of 2"):
        coco_strings(toggles, regions, frames, block=48)
    wrong = MaskToggles(toggles.toggles.to(torch.int64), toggles.ends, None, toggles.capacity)
    with pytest.raises(ValueError, match="int32 toggles"):
        coco_strings(wrong, regions, frames)
    with pytest.raises(ValueError, match="one end per detection row"):
        coco_strings(MaskToggles(toggles.toggles, toggles.ends[:0], None, toggles.capacity), regions, frames)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (the interpreter runs the small masks)")
@pytest.mark.parametrize("size", [(1080, 1920), (2160, 3840)], ids=["1080p", "4k"])
def test_cuda_full_frames(size):
    """25 discs of every size and a noise mask per frame, two frames, compiled on the GPU."""
    height, width = size
    rng = np.random.default_rng(height)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for _ in range(2):
        masks = [
            (yy - rng.uniform(0, height)) ** 2 + (xx - rng.uniform(0, width)) ** 2 < rng.uniform(2, 900) ** 2
            for _ in range(25)
        ]
        masks.append(rng.random((height, width)) < 0.5)
        frames.append(masks)
    args = batch_of(frames, DEVICE, unused_rows=7)
    assert strings_of(*args) == [encode_mask(m) for masks in frames for m in masks]
