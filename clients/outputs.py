"""What a run leaves in its output folder: results.jsonl and annotated.mp4, written frame by
frame, and summary.json at the end.

The folder is checked and cleared of an earlier run's outputs before anything streams, so the
files there always belong to the latest run, and an unusable folder is found before any work.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from clients.annotate import annotate
from clients.results import dropped_record, error_record, to_json_record
from clients.server_stats import StageStats, format_table
from clients.stream import FrameOutcome

RESULTS, ANNOTATED, SUMMARY = "results.jsonl", "annotated.mp4", "summary.json"


class OutputError(RuntimeError):
    """The output folder cannot be used; the message names it and why."""


def prepare_out_dir(out_dir: Path) -> None:
    """Creates out_dir if missing, checks that files can be written in it and removes an
    earlier run's outputs.

    Raises:
        OutputError: the folder cannot be created or written, or an old output not removed.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
        for name in (RESULTS, ANNOTATED, SUMMARY):
            (out_dir / name).unlink(missing_ok=True)
    except OSError as error:
        raise OutputError(f"cannot use output folder {out_dir}: {error.strerror}") from error


class Outputs:
    """results.jsonl and annotated.mp4, written frame by frame. A context manager.

    Args:
        out_dir: the folder (prepare_out_dir'd).
        fps: the source's frame rate; None when it has none (an image folder): no timestamps.
        write_video: write annotated.mp4 (frames the source did not have are left out of it).
    """

    def __init__(self, out_dir: Path, fps: float | None, write_video: bool):
        self.fps = fps
        self.video_path = out_dir / ANNOTATED if write_video else None
        self._jsonl = (out_dir / RESULTS).open("w")
        self._writer: cv2.VideoWriter | None = None

    def write(self, outcome: FrameOutcome) -> None:
        timestamp_s = outcome.index / self.fps if self.fps else None
        if outcome.ok:
            record = to_json_record(outcome.index, outcome.result, timestamp_s)
        elif outcome.dropped:
            record = dropped_record(outcome.index, timestamp_s)
        else:
            record = error_record(outcome.index, outcome.error, timestamp_s)
        self._jsonl.write(json.dumps(record) + "\n")
        if self.video_path is not None and outcome.frame is not None:
            # A failed frame goes in undrawn: the video keeps the input's frame count and timing.
            drawn = annotate(outcome.frame, outcome.result) if outcome.ok else outcome.frame
            self._video_writer(outcome.frame).write(drawn)

    def _video_writer(self, frame: np.ndarray) -> cv2.VideoWriter:
        if self._writer is None:
            height, width = frame.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.video_path), fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                raise OSError(f"cannot write video {self.video_path} (mp4v)")
        return self._writer

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._jsonl.close()
        if self._writer is not None:
            self._writer.release()


@dataclass
class RunSummary:
    """What one run did, kept up to date as it goes: summary.json holds it, the CLI prints it."""

    video: str  # the source: a video file, a stream URL or an image folder
    transport: str
    depth: int
    frames: int = 0  # answered, failed and dropped ones included: each is a line of results.jsonl
    failed: int = 0
    dropped: int = 0  # live frames given up for newer ones while the server was behind
    seconds: float = 0.0
    fps: float = 0.0  # end to end: decode, inference, drawing and writing
    stages: list[StageStats] = field(default_factory=list)
    stats_missing: str | None = "not read: the run stopped before streaming"  # why no `stages`
    server_outages: int = 0  # times the server went away and the run waited for it
    exit_code: int | None = None
    stopped_because: str | None = None  # None: it went through (the video, or max_frames)

    @property
    def served(self) -> int:
        return self.frames - self.failed - self.dropped

    def count(self, outcome: FrameOutcome) -> None:
        self.frames += 1
        self.dropped += outcome.dropped
        self.failed += not outcome.ok and not outcome.dropped

    def took(self, seconds: float) -> None:
        self.seconds = seconds
        self.fps = self.frames / seconds if seconds > 0 else 0.0

    def write(self, out_dir: Path) -> None:
        (out_dir / SUMMARY).write_text(json.dumps(asdict(self), indent=2) + "\n")

    def report(self) -> str:
        totals = (
            f"frames: {self.frames}  failed: {self.failed}  dropped: {self.dropped}  "
            f"wall: {self.seconds:.2f} s  end-to-end: {self.fps:.2f} frames/s"
        )
        stages = format_table(self.stages) if self.stages else f"statistics: {self.stats_missing}"
        stopped = [] if self.stopped_because is None else [f"stopped early: {self.stopped_because}"]
        return "\n".join([totals, stages, *stopped])
