"""backends.batch_buckets: which graphs a graph-replaying engine captures and which one a batch uses."""

from __future__ import annotations

import pytest

from backends.batch_buckets import bucket_for, bucket_sizes, chunks


@pytest.mark.parametrize(
    ("max_batch", "expected"),
    [
        (1, (1,)),
        (2, (1, 2)),
        (3, (1, 2, 3)),
        (8, (1, 2, 4, 8)),
        (12, (1, 2, 4, 8, 12)),
        (20, (1, 2, 4, 8, 12, 16, 20)),
        (32, (1, 2, 4, 8, 12, 16, 24, 32)),
        (64, (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)),
    ],
)
def test_bucket_sizes_are_powers_of_two_and_midpoints_from_8_then_the_max(max_batch, expected):
    assert bucket_sizes(max_batch) == expected


@pytest.mark.parametrize("bad", [0, -4, 2.0, True, None])
def test_bucket_sizes_refuse_a_bad_max(bad):
    with pytest.raises(ValueError, match="max batch size must be an integer >= 1"):
        bucket_sizes(bad)


def test_each_batch_takes_the_smallest_bucket_that_holds_it():
    buckets = bucket_sizes(12)
    chosen = {n: bucket_for(n, buckets) for n in range(1, 13)}
    assert chosen == {1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 6: 8, 7: 8, 8: 8, 9: 12, 10: 12, 11: 12, 12: 12}
    # Padding stays under half a bucket, except for the last, and from 8 rows up under a third.
    assert all(n > bucket / 2 for n, bucket in chosen.items() if bucket <= 8)
    large = {n: bucket_for(n, bucket_sizes(64)) for n in range(9, 65)}
    assert all(bucket - n < bucket / 3 for n, bucket in large.items())


def test_bucket_for_refuses_what_no_bucket_holds():
    with pytest.raises(ValueError, match="batch of 9 is larger than the largest bucket, 8"):
        bucket_for(9, (1, 2, 4, 8))
    with pytest.raises(ValueError, match="batch size must be >= 1, got 0"):
        bucket_for(0, (1, 2))


def test_chunks_cover_every_row_once_in_order():
    assert chunks(70, 32) == [(0, 32), (32, 64), (64, 70)]
    assert chunks(5, 8) == [(0, 5)]
    assert chunks(32, 32) == [(0, 32)]
