"""The C contour tracer (contour_trace.c), compiled at first use and called through ctypes.

cv2.findContours on a mask costs its area: the host path rebuilt each mask's tight crop from
its runs, then scanned it (25 detections at 1080p, 6.4 M crop pixels: 5.2 ms on a 2-core EPYC).
contour_trace.c works from the runs themselves, its cost the runs plus the boundary pixels it
follows (there 83 k toggles and ~80 k boundary pixels, ~57 k of them on the components that could
be the largest: 0.48 ms, about half of it following the borders, where a lower or upper edge is
walked one column per step whatever its slope and a stretch along a column is one jump, and a
quarter the union-find), and it returns exactly what cv2 does, point for point
(tests/backends/test_contour_trace.py). It follows OpenCV 4.11's modules/imgproc/src:
contours_new.cpp (findContours: a zero border padded around the image, outer borders started
where the raster scan first meets a component; icvFetchContourEx: the border following, the
first neighbour searched clockwise from code 3, then counterclockwise from the one after the
pixel we came from, a point kept where the chain code changes), contours_common.hpp
(chainCodeDeltas; Tree.addChild prepends, so contours come back in reverse discovery order)
and shapedescr.cpp (contourArea: the shoelace sum).

Why C: the kernels' Triton-lang already needs a C compiler on every host that runs them
(triton.runtime.build compiles its driver stub with $CC, else clang or gcc), so this adds no
requirement. The library is built with the same kind of compiler ($CC, else gcc, clang, cc),
once per source version, into a cache folder shared by the server's processes: each builds
under a temporary name and renames it into place, so instances starting together never load
a half-written file.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("contour_trace.c")
FLAGS = ["-O3", "-shared", "-fPIC", "-std=c11", "-pthread"]
COMPILERS = ("gcc", "clang", "cc")
# The C function's error codes (contour_trace.c).
NO_MEMORY, BAD_TOGGLES = -1, -2


def find_compiler() -> list[str]:
    """$CC (split as a shell would, e.g. "ccache gcc"), else the first of gcc, clang, cc on PATH."""
    if os.environ.get("CC"):
        command = shlex.split(os.environ["CC"])
        if shutil.which(command[0]) is None:
            raise RuntimeError(f"CC={os.environ['CC']!r} is not an executable: the contour tracer needs a C compiler")
        return command
    for name in COMPILERS:
        if shutil.which(name):
            return [name]
    raise RuntimeError(
        f"no C compiler for the contour tracer: none of {', '.join(COMPILERS)} is on PATH and CC is unset "
        "(install gcc and libc6-dev, or set CC)"
    )


def cache_folder() -> Path:
    """$XDG_CACHE_HOME/rfdetr-triton, else ~/.cache/rfdetr-triton."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "rfdetr-triton"


def build_library(folder: Path) -> Path:
    """The compiled tracer in `folder`, named by the hash of its source and flags; compiled only
    when that file is not there yet."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(FLAGS).encode()).hexdigest()[:16]
    library = folder / f"contour_trace-{digest}.so"
    if library.exists():
        return library
    compiler = find_compiler()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=folder, prefix=library.stem, suffix=".so.partial")
        os.close(handle)
    except OSError as error:
        raise RuntimeError(f"cannot write the contour tracer's library into {folder}: {error}") from error
    try:
        done = subprocess.run(
            [*compiler, *FLAGS, "-o", partial, str(SOURCE)], check=False, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(compiler)} failed to compile {SOURCE}:\n{done.stderr.strip()}")
        os.replace(partial, library)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return library


@functools.cache
def tracer_library() -> ctypes.CDLL:
    """contour_trace.c, loaded (and built first where needed) once per process: largest_contours,
    and crew_start / crew_wake / crew_stop for its helper threads."""
    library = ctypes.CDLL(str(build_library(cache_folder())))
    pointer = np.ctypeslib.ndpointer
    library.largest_contours.argtypes = [
        pointer(np.int32, flags="C"),  # toggles
        pointer(np.int64, flags="C"),  # ends
        pointer(np.int64, flags="C"),  # heights
        ctypes.c_int64,  # count
        pointer(np.int32, flags="C"),  # points: room x 2
        ctypes.c_int64,  # room
        pointer(np.int64, flags="C"),  # offsets: count + 1
        pointer(np.int64, flags="C"),  # bad_mask: 1
        ctypes.c_void_p,  # crew, or None: this thread alone
    ]
    library.largest_contours.restype = ctypes.c_int64
    library.crew_start.argtypes = [ctypes.c_int64]  # helpers
    library.crew_start.restype = ctypes.c_void_p
    library.crew_stop.argtypes = [ctypes.c_void_p]
    library.crew_stop.restype = None
    library.crew_wake.argtypes = [ctypes.c_void_p, ctypes.c_int64]  # crew, helpers
    library.crew_wake.restype = None
    return library
