"""Response builders: the top-k contributions pick what a straightforward reference picks."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from serving.responses import _top_k


def _reference_top_k(
    contributions: NDArray[np.float64], k: int
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """The earlier implementation (take_along_axis on the original shape), kept as the oracle."""
    values = contributions[..., :-1]
    k = min(k, values.shape[-1])
    if k == 0:
        return np.empty((*values.shape[:-1], 0), dtype=np.intp), values[..., :0]
    idx = np.argpartition(-np.abs(values), k - 1, axis=-1)[..., :k]
    picked = np.take_along_axis(values, idx, axis=-1)
    order = np.argsort(-np.abs(picked), axis=-1, kind="stable")
    return np.take_along_axis(idx, order, axis=-1), np.take_along_axis(picked, order, axis=-1)


@pytest.mark.parametrize("shape", [(1, 8, 30), (3, 8, 30), (1, 30), (40, 30), (2, 1, 4)])
@pytest.mark.parametrize("k", [0, 1, 5, 29, 50])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_top_k_picks_what_the_reference_picks(shape: tuple[int, ...], k: int, ties: bool) -> None:
    rng = np.random.default_rng(sum(shape) + k)
    contributions = rng.normal(size=shape)
    if ties:  # unused features contribute exactly 0; equal magnitudes with both signs
        contributions = np.round(contributions * 2) / 2
        contributions[..., 1 : shape[-1] // 2] = 0.0
        contributions[..., -2] = -contributions[..., 0]
    idx, val = _top_k(contributions, k)
    ref_idx, ref_val = _reference_top_k(contributions, k)
    assert idx.shape == ref_idx.shape and val.shape == ref_val.shape
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)
    assert idx.dtype == ref_idx.dtype
