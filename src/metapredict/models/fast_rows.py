"""Low-latency single-row prediction through LightGBM's ``SingleRowFast`` C API.

``Booster.predict`` spends ~80-130 us per call setting itself up, whatever the row count; the
C API's fast path keeps that set-up in a prepared handle so a row costs little more than
walking the trees. Handles are per process and per thread of use (the request path calls them
from the event loop only) and are never pickled: they are rebuilt lazily after loading.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
from lightgbm import basic
from numpy.typing import ArrayLike, NDArray

from metapredict.models.boosting import PREDICT_THREADS

FloatArray = NDArray[np.float64]

#: LightGBM's loaded C library (a private name of lightgbm.basic, stable across 4.x).
_LIB: Any = getattr(basic, "_LIB")  # noqa: B009

RAW = basic._C_API_PREDICT_RAW_SCORE
NORMAL = basic._C_API_PREDICT_NORMAL
CONTRIB = basic._C_API_PREDICT_CONTRIB

#: Our own function object for the per-row call (``_LIB[name]`` is not lightgbm's cached
#: attribute), typed so it takes plain integer addresses: no ctypes objects built per row.
_PREDICT_ROW: Any = _LIB["LGBM_BoosterPredictForMatSingleRowFast"]
_PREDICT_ROW.argtypes = [ctypes.c_void_p] * 4
_PREDICT_ROW.restype = ctypes.c_int


class FastRowPredictor:
    """One booster, one prediction type, rows of ``n_features`` float64 values."""

    def __init__(self, booster: lgb.Booster, predict_type: int, n_features: int) -> None:
        self._handle = ctypes.c_void_p()
        self.n_features = n_features
        self.width = n_features + 1 if predict_type == CONTRIB else 1
        self._out = np.empty(self.width, dtype=np.float64)
        self._out_len = ctypes.c_int64(0)
        basic._safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(predict_type),
                ctypes.c_int(0),
                ctypes.c_int(-1),
                ctypes.c_int(basic._C_API_DTYPE_FLOAT64),
                ctypes.c_int32(n_features),
                basic._c_str(f"num_threads={PREDICT_THREADS}"),
                ctypes.byref(self._handle),
            )
        )
        self._handle_address: int = self._handle.value or 0
        self._out_len_address = ctypes.addressof(self._out_len)
        self._out_address: int = self._out.ctypes.data

    def __call__(self, row: FloatArray) -> FloatArray:
        """Predict one contiguous float64 row; returns a view valid until the next call."""
        if row.shape != (self.n_features,) or row.dtype != np.float64:
            raise ValueError(f"expected a float64 row of {self.n_features} values")
        row = np.ascontiguousarray(row)
        self._predict_at(row.ctypes.data, self._out_address)
        return self._out

    def _predict_at(self, row_address: int, out_address: int) -> None:
        """Raw addresses: ``n_features`` float64 in, ``width`` float64 out (callers check)."""
        basic._safe_call(
            _PREDICT_ROW(self._handle_address, row_address, self._out_len_address, out_address)
        )

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None and self._handle.value:
            _LIB.LGBM_FastConfigFree(self._handle)
            self._handle = ctypes.c_void_p()


#: Batches up to this many rows use the fast path; larger ones ``Booster.predict``.
FAST_ROWS = 16


class FastRowCache:
    """Lazily built fast predictors per thread, keyed by (booster identity, predict type).

    A prepared handle holds buffers, so each thread gets its own; nothing here is pickled.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, key: int, booster: lgb.Booster, predict_type: int, n: int) -> FastRowPredictor:
        cache: dict[tuple[int, int], FastRowPredictor] | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        fast = cache.get((key, predict_type))
        if fast is None:
            fast = cache[(key, predict_type)] = FastRowPredictor(booster, predict_type, n)
        return fast

    def get_all(
        self, boosters: Sequence[lgb.Booster], predict_type: int, n: int
    ) -> tuple[FastRowPredictor, ...]:
        """One predictor per booster, the tuple itself cached.

        A group is keyed by its boosters' identities too: one cache can serve several groups
        (an ensemble's members and its spread model share the prediction type and width).
        """
        cache: dict[tuple[int, int, tuple[int, ...]], tuple[FastRowPredictor, ...]] | None = (
            getattr(self._local, "groups", None)
        )
        if cache is None:
            cache = self._local.groups = {}
        key = (predict_type, n, tuple(id(b) for b in boosters))
        group = cache.get(key)
        if group is None:
            group = cache[key] = tuple(self.get(id(b), b, predict_type, n) for b in boosters)
        return group

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._local = threading.local()


def predict_rows(predictors: Sequence[FastRowPredictor], rows: FloatArray, out: FloatArray) -> None:
    """``out[i, k, :] = predictors[k](rows[i])`` for every row ``i`` and predictor ``k``.

    ``rows`` (n, n_features) and ``out`` (n, len(predictors), width) are C-contiguous float64
    arrays; each prediction is written straight into ``out`` (no copy, no per-row ctypes
    objects): the C call is most of what a row costs.
    """
    n = rows.shape[0]
    # One pass over the (many, with an interval ensemble) predictors, then at most one shape.
    for n_features, width in {(p.n_features, p.width) for p in predictors}:
        if rows.shape != (n, n_features) or out.shape != (n, len(predictors), width):
            raise ValueError(
                f"rows {rows.shape} / out {out.shape} do not fit a predictor of "
                f"{n_features} features and {width} outputs"
            )
    if not (
        rows.dtype == np.float64
        and out.dtype == np.float64
        and rows.flags.c_contiguous
        and out.flags.c_contiguous
    ):
        raise ValueError("rows and out must be C-contiguous float64 arrays")
    rows_at, out_at = rows.ctypes.data, out.ctypes.data
    row_step, out_row_step, out_step = rows.strides[0], out.strides[0], out.strides[1]
    call = _PREDICT_ROW  # what FastRowPredictor._predict_at does, without a method call per row
    for k, p in enumerate(predictors):
        handle, out_len = p._handle_address, p._out_len_address
        for i in range(n):
            status = call(
                handle, rows_at + i * row_step, out_len, out_at + i * out_row_step + k * out_step
            )
            if status:
                basic._safe_call(status)


def fast_rows(X: Any, n_features: int) -> FloatArray | None:
    """``X`` as a C-contiguous float64 matrix when the fast path applies, else None."""
    if (
        isinstance(X, np.ndarray)
        and X.ndim == 2
        and 0 < X.shape[0] <= FAST_ROWS
        and X.shape[1] == n_features
        and X.dtype == np.float64
    ):
        return np.ascontiguousarray(X)
    return None


def as_matrix(X: ArrayLike, n_features: int) -> FloatArray:
    """``X`` as an (n, ``n_features``) float64 matrix, or a ``ValueError`` saying why not."""
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise ValueError(
            f"expected a matrix of {n_features} feature columns, got shape {arr.shape}"
        )
    return arr
