"""benchmarks.bench_jpeg_decode runs on any host and writes its table; bad options are named."""

from __future__ import annotations

import pytest
import torch

from benchmarks import bench_jpeg_decode


def test_one_row_per_size_and_quality_with_a_cell_per_batch(tmp_path):
    out = tmp_path / "jpeg-decode.md"
    bench_jpeg_decode.main(["--sizes", "64x48,32x32", "--qualities", "75,95", "--batches", "1,2", "--repeats", "3", "--out", str(out)])
    rows = [line for line in out.read_text().splitlines() if line.startswith(("| 64x48", "| 32x32"))]
    assert [row.split(" | ")[:2] for row in rows] == [["| 64x48", "75"], ["| 64x48", "95"], ["| 32x32", "75"], ["| 32x32", "95"]]
    cells = rows[0].strip("| ").split(" | ")
    assert len(cells) == 6 + 2
    assert ("x)" in cells[-1]) == torch.cuda.is_available()  # the OpenCV / nvJPEG ratio needs a GPU


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--sizes", "64"], "every size must be WIDTHxHEIGHT"),
        (["--qualities", "101"], "every quality 1..100"),
        (["--batches", "0"], "every batch >= 1"),
        (["--sizes", "axb"], "sizes are WIDTHxHEIGHT"),
    ],
)
def test_bad_options_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench_jpeg_decode.main(argv)
    assert message in capsys.readouterr().err
