"""The postprocess kernels' device work for one frame, replayed from a CUDA graph.

Queuing that work (backends.postprocess_kernel.queue_device_work: six Triton launches and a
dozen torch ops) costs about 0.5 ms of Python per batch on the H200 host against 0.15 ms of GPU
work for a 1080p frame with 25 detections, so at batch 1 the host sets the pace. Replayed from
a CUDA graph the same work costs 0.04 ms to queue and runs in 0.17 ms from first to last kernel
(benchmarks/results/h200/postprocess-graph.md).

One graph per frame geometry (the engine outputs' shapes, the frame size and the settings the
kernels take), captured at its first frame (the stage's warm-up captures the sizes it runs) and
replayed on copies of each frame's outputs into the graph's inputs. At most MAX_GRAPHS are kept,
the least recently used dropped. Batches of several frames launch eagerly: the launch cost is
spread over their frames there, and a graph per combination of frame sizes would multiply.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from backends.mask_region_kernel import Frames, MaskRegions
from backends.postprocess_kernel import (
    PendingPostprocess,
    check_batch,
    postprocess_batch_kernels,
    queue_device_work,
)
from backends.postprocess_settings import PostprocessSettings, frame_polygons
from backends.results import SegmentationResult
from backends.rle_kernel import MaskToggles
from backends.rle_strings_kernel import CocoStrings

# A graph holds its inputs, the toggles' and strings' room and the kernels' scratch: from
# their sizes, 10-30 MB for a 1080p frame (100-300 detection slots). Eight covers the frame
# sizes one server sees.
MAX_GRAPHS = 8


@dataclass
class CapturedFrame:
    """One frame geometry's graph, the inputs it reads and the outputs it writes."""

    dets: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    frames: Frames
    regions: MaskRegions
    toggles: MaskToggles
    strings: CocoStrings
    graph: torch.cuda.CUDAGraph


class FrameGraphs:
    """The CUDA graphs of one process's single-frame batches, by frame geometry."""

    def __init__(self, max_graphs: int = MAX_GRAPHS):
        self._graphs: OrderedDict[tuple, CapturedFrame] = OrderedDict()
        self._max_graphs = max_graphs

    def __len__(self) -> int:
        return len(self._graphs)

    def launch(
        self,
        dets: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor,
        image_size: tuple[int, int],
        settings: PostprocessSettings,
        polygons: bool,
    ) -> PendingPostprocess:
        """launch_postprocess for one frame on a GPU, replayed (captured first when new).

        The pending result reads the graph's outputs: fetch it before this geometry's next
        launch, which overwrites them."""
        if dets.device.type != "cuda" or labels.shape[0] != 1:
            raise ValueError(f"graphs take one frame on a GPU, got {labels.shape[0]} on {dets.device}")
        size = (int(image_size[0]), int(image_size[1]))
        # Everything the captured launches were specialized on (a new dtype or device is a new
        # capture, whose first run off the graph checks it as launch_postprocess would).
        key = (
            *((t.device, t.dtype, tuple(t.shape)) for t in (dets, labels, masks)),
            size, settings.num_select, settings.score_threshold, settings.classes,
        )  # fmt: skip
        captured = self._graphs.get(key)
        if captured is None:
            captured = self._graphs[key] = capture(dets, labels, masks, size, settings)
            if len(self._graphs) > self._max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
            captured.dets.copy_(dets)
            captured.labels.copy_(labels)
            captured.masks.copy_(masks)
        captured.graph.replay()
        return PendingPostprocess(
            captured.masks, captured.frames, captured.regions, captured.toggles, captured.strings, settings,
            [polygons],
        )  # fmt: skip


def capture(
    dets: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    image_size: tuple[int, int],
    settings: PostprocessSettings,
) -> CapturedFrame:
    """A graph of queue_device_work on copies of these outputs (which it then holds, as it ran)."""
    device = masks.device
    inputs = [t.clone(memory_format=torch.contiguous_format) for t in (dets, labels, masks)]
    frames = Frames.build([image_size], tuple(masks.shape[-2:]), device)
    with torch.cuda.device(device):
        # A first run off the graph: the kernels compile and load, the lazy tables fill, and
        # bad inputs are refused before any capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            queue_device_work(*inputs, frames, settings)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (the contour tracer's, the stub's) may call CUDA meanwhile.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            regions, toggles, strings = queue_device_work(*inputs, frames, settings)
    return CapturedFrame(*inputs, frames, regions, toggles, strings, graph)


@functools.cache
def process_graphs() -> FrameGraphs:
    """The graphs of this process (a Triton model instance is one process)."""
    return FrameGraphs()


def postprocess_batch_graphed(
    dets: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    image_sizes: list[tuple[int, int]],
    settings: PostprocessSettings,
    polygons: Sequence[bool] | None = None,
) -> list[SegmentationResult]:
    """backends.postprocess_kernel.postprocess_batch_kernels, a single frame on a GPU replayed
    from its graph: same arguments, same results."""
    if masks.device.type != "cuda" or labels.shape[0] != 1:
        return postprocess_batch_kernels(dets, labels, masks, image_sizes, settings, polygons)
    check_batch(dets, labels, masks, image_sizes)
    traced = frame_polygons(settings, polygons, 1)
    return process_graphs().launch(dets, labels, masks, image_sizes[0], settings, traced[0]).results()
