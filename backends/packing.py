"""Variable-length per-detection outputs as one flat tensor plus N+1 offsets.

Detection i owns data[offsets[i]:offsets[i + 1]]. Everything the ensemble returns is a numeric
tensor this way, strings too (UTF-8 bytes): no padding, and no numpy object (BYTES) arrays,
which the python backend can only build from numpy, never through DLPack from the GPU.
"""

from __future__ import annotations

import numpy as np


def pack(parts: list[np.ndarray], empty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """N arrays -> (their concatenation along axis 0, (N + 1,) int32 offsets).

    Args:
        parts: arrays that agree in dtype and in every axis but the first.
        empty: the zero-row array returned when parts has no rows at all (fixes dtype, shape).
    """
    offsets = np.zeros(len(parts) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(p) for p in parts], dtype=np.int64)
    data = np.concatenate(parts).astype(empty.dtype, copy=False) if parts else empty
    return data.reshape((-1, *empty.shape[1:])), offsets


def unpack(data: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Inverse of pack; raises ValueError when the offsets do not fit the data."""
    offsets = np.asarray(offsets)
    if offsets.ndim != 1 or offsets.size == 0 or offsets[0] != 0 or offsets[-1] != len(data):
        raise ValueError(f"offsets {offsets.tolist()[:8]} do not cover {len(data)} rows")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must not decrease")
    return [data[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def pack_bytes(strings: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """N byte strings -> (uint8 concatenation, (N + 1,) int32 offsets)."""
    return pack([np.frombuffer(s, dtype=np.uint8) for s in strings], np.zeros(0, np.uint8))


def unpack_bytes(data: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    return [part.tobytes() for part in unpack(np.asarray(data, dtype=np.uint8), offsets)]
