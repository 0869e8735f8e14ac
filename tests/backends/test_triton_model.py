from __future__ import annotations

import numpy as np
import torch

from backends.triton_model import with_row_major_strides


def row_major(shape):
    return list(torch.empty(shape).stride())


def test_row_major_tensors_pass_through_untouched():
    tensor = torch.arange(24).reshape(2, 3, 4)
    assert with_row_major_strides(tensor) is tensor


def test_zero_strides_of_empty_numpy_arrays_are_fixed():
    # What np.concatenate of empty polygons gives (numpy 1.26), and the python backend refuses.
    empty = np.lib.stride_tricks.as_strided(np.zeros((0, 2), np.int32), strides=(0, 0))
    fixed = with_row_major_strides(torch.from_numpy(empty))
    assert list(fixed.stride()) == row_major((0, 2)) and fixed.dtype == torch.int32


def test_transposed_and_sliced_tensors_become_row_major_copies():
    base = torch.arange(12.0).reshape(3, 4)
    for view in (base.t(), base[:, ::2]):
        fixed = with_row_major_strides(view)
        assert list(fixed.stride()) == row_major(view.shape)
        assert torch.equal(fixed, view)
