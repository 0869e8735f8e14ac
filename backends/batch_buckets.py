"""Batch buckets: the few batch sizes a graph-replaying engine prepares, and which one a batch uses.

A CUDA graph replays fixed shapes, so an engine captures one graph per bucket and pads each batch
up to the smallest bucket that holds it. Up to 8 rows RF-DETR's forward costs about the same
(launch-bound), so powers of two do there; above, its time grows with the rows, and the midpoint
between two powers (12, 24, ...) keeps the padding under a third: at concurrency 32 the ensemble
hands the engine batches of about 9-10, which cost 3.66 ms through a 16-row graph and 2.94 through
a 12-row one on an H200 (benchmarks/results/h200/perf-analyzer/engine-handoff.md). The count
of graphs (each a compile of about half a minute, in parallel at build time) stays small. The same
sizes are the dynamic batcher's preferred sizes, so most batches need no padding at all.
"""

from __future__ import annotations


def bucket_sizes(max_batch_size: int) -> tuple[int, ...]:
    """1, 2, 4, 8, 12, 16, 24, 32, 48, ... (powers of two, and from 8 up the midpoints after
    them) below max_batch_size, then max_batch_size itself.

    Raises:
        ValueError: max_batch_size is not an integer >= 1.
    """
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise ValueError(f"max batch size must be an integer >= 1, got {max_batch_size!r}")
    sizes = [1, 2, 4]
    power = 8
    while power < max_batch_size:
        sizes += [power, power + power // 2]
        power *= 2
    return (*(size for size in sizes if size < max_batch_size), max_batch_size)


def bucket_for(batch_size: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket that holds batch_size frames.

    Raises:
        ValueError: batch_size < 1, or larger than the largest bucket (split it first).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    for bucket in sorted(buckets):
        if bucket >= batch_size:
            return bucket
    raise ValueError(f"batch of {batch_size} is larger than the largest bucket, {max(buckets)}")


def chunks(batch_size: int, largest: int) -> list[tuple[int, int]]:
    """(start, stop) row ranges of at most `largest` rows covering batch_size rows."""
    return [(start, min(start + largest, batch_size)) for start in range(0, batch_size, largest)]
