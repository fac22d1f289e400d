"""Low-latency single-row prediction through LightGBM's ``SingleRowFast`` C API.

``Booster.predict`` spends ~80-130 us per call setting itself up, whatever the row count; the
C API's fast path keeps that set-up in a prepared handle so a row costs little more than
walking the trees. Handles are per process and per thread of use (the request path calls them
from the event loop only) and are never pickled: they are rebuilt lazily after loading.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import lightgbm as lgb
import numpy as np
from lightgbm import basic
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: LightGBM's loaded C library (a private name of lightgbm.basic, stable across 4.x).
_LIB: Any = getattr(basic, "_LIB")  # noqa: B009

RAW = basic._C_API_PREDICT_RAW_SCORE
NORMAL = basic._C_API_PREDICT_NORMAL
CONTRIB = basic._C_API_PREDICT_CONTRIB


class FastRowPredictor:
    """One booster, one prediction type, rows of ``n_features`` float64 values."""

    def __init__(self, booster: lgb.Booster, predict_type: int, n_features: int) -> None:
        self._handle = ctypes.c_void_p()
        self._n_features = n_features
        width = n_features + 1 if predict_type == CONTRIB else 1
        self._out = np.empty(width, dtype=np.float64)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_len = ctypes.c_int64(0)
        basic._safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(predict_type),
                ctypes.c_int(0),
                ctypes.c_int(-1),
                ctypes.c_int(basic._C_API_DTYPE_FLOAT64),
                ctypes.c_int32(n_features),
                basic._c_str("num_threads=1"),
                ctypes.byref(self._handle),
            )
        )

    def __call__(self, row: FloatArray) -> FloatArray:
        """Predict one contiguous float64 row; returns a view valid until the next call."""
        basic._safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                self._handle,
                row.ctypes.data_as(ctypes.c_void_p),
                ctypes.byref(self._out_len),
                self._out_ptr,
            )
        )
        return self._out

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None and self._handle.value:
            _LIB.LGBM_FastConfigFree(self._handle)
            self._handle = ctypes.c_void_p()


#: Batches up to this many rows use the fast path; larger ones ``Booster.predict``.
FAST_ROWS = 16


class FastRowCache:
    """Lazily built fast predictors per thread, keyed by (booster index, predict type).

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

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._local = threading.local()


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
