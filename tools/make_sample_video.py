"""Writes a synthetic sample video: coloured circles and rectangles moving over a texture.

    python -m tools.make_sample_video outputs/sample.mp4 [--frames 60] [--width 640] \\
        [--height 360] [--fps 15]

Deterministic (fixed seed): the same arguments give the same frames. For demos and tests of the
streaming client where no real footage is at hand.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger("make_sample_video")

_SEED = 7
_NUM_SHAPES = 6


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Smooth colour noise over a diagonal gradient: texture for the model, not a flat wall."""
    noise = rng.integers(40, 200, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
    texture = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    ramp = np.add.outer(np.linspace(0, 40, height), np.linspace(0, 40, width))[..., None]
    return np.clip(texture + ramp, 0, 255).astype(np.uint8)


def _bounce(start: np.ndarray, velocity: np.ndarray, t: int, limit: np.ndarray) -> np.ndarray:
    """Position at time t of a point moving at constant velocity, reflected at 0 and limit."""
    travelled = np.mod(start + velocity * t, 2 * limit)
    return np.where(travelled > limit, 2 * limit - travelled, travelled)


def render_frames(frames: int, width: int, height: int) -> Iterator[np.ndarray]:
    """The video's BGR uint8 frames, one at a time."""
    rng = np.random.default_rng(_SEED)
    background = _background(rng, width, height)
    size = max(8, min(width, height) // 6)
    limit = np.array([width, height], dtype=np.float64)
    starts = rng.uniform(0, 1, (_NUM_SHAPES, 2)) * limit
    velocities = rng.uniform(-1, 1, (_NUM_SHAPES, 2)) * limit / 40
    colours = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(_NUM_SHAPES)]
    for t in range(frames):
        frame = background.copy()
        for i in range(_NUM_SHAPES):
            x, y = (int(v) for v in _bounce(starts[i], velocities[i], t, limit))
            if i % 2:
                cv2.rectangle(
                    frame,
                    (x - size, y - size // 2),
                    (x + size, y + size // 2),
                    colours[i],
                    cv2.FILLED,
                )
            else:
                cv2.circle(frame, (x, y), size // 2 + i * 2, colours[i], cv2.FILLED, cv2.LINE_AA)
        yield frame


def make_sample_video(
    path: str | Path, frames: int = 60, width: int = 640, height: int = 360, fps: float = 15
) -> Path:
    """Writes the sample video (mp4v) and returns its path.

    Args:
        path: the .mp4 file to write; its folder is created.
        frames: number of frames.
        width: frame width in pixels.
        height: frame height in pixels.
        fps: frames per second.
    """
    if frames < 1 or width < 16 or height < 16 or fps <= 0:
        raise ValueError(
            f"need frames >= 1, width and height >= 16, fps > 0; "
            f"got {frames} frames, {width}x{height}, {fps} fps"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path} (mp4v)")
    try:
        for frame in render_frames(frames, width, height):
            writer.write(frame)
    finally:
        writer.release()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", type=Path, help="the .mp4 file to write")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=float, default=15)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    path = make_sample_video(args.path, args.frames, args.width, args.height, args.fps)
    logger.info(
        "wrote %s: %d frames, %dx%d at %g fps", path, args.frames, args.width, args.height, args.fps
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
