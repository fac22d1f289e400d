"""The single-row LightGBM fast path: the same numbers as ``Booster.predict``, checked shapes."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from numpy.typing import NDArray

from metapredict.models import fast_rows
from metapredict.models.boosting import PREDICT_THREADS
from metapredict.models.fast_rows import (
    CONTRIB,
    NORMAL,
    RAW,
    FastRowCache,
    FastRowPredictor,
    predict_rows,
)

Models = tuple[list[lgb.Booster], NDArray[np.float64]]


@pytest.fixture(scope="module")
def boosters() -> Models:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    X[rng.random(X.shape) < 0.1] = np.nan
    out = []
    for seed, feature in ((1, 0), (2, 3)):
        y = (np.nan_to_num(X[:, feature]) + rng.normal(scale=0.5, size=200)) > 0
        params = {"objective": "binary", "num_leaves": 4, "verbose": -1, "seed": seed}
        out.append(lgb.train(params, lgb.Dataset(X, y), num_boost_round=15))
    return out, X


@pytest.mark.parametrize(
    ("predict_type", "kwargs"),
    [(RAW, {"raw_score": True}), (NORMAL, {}), (CONTRIB, {"pred_contrib": True})],
    ids=["raw", "normal", "contrib"],
)
def test_predict_rows_gives_what_booster_predict_gives(
    boosters: Models, predict_type: int, kwargs: dict[str, Any]
) -> None:
    models, X = boosters
    rows = np.ascontiguousarray(X[:7])
    predictors = FastRowCache().get_all(models, predict_type, rows.shape[1])
    out = np.empty((rows.shape[0], len(models), predictors[0].width))
    predict_rows(predictors, rows, out)
    for k, model in enumerate(models):
        expected = np.asarray(model.predict(rows, **kwargs)).reshape(rows.shape[0], -1)
        np.testing.assert_array_equal(out[:, k, :], expected)
        for i in range(rows.shape[0]):  # one row at a time: the same numbers again
            np.testing.assert_array_equal(predictors[k](rows[i]), expected[i])


def test_get_all_reuses_the_predictors(
    boosters: Models,
) -> None:
    models, X = boosters
    cache = FastRowCache()
    group = cache.get_all(models, CONTRIB, X.shape[1])
    assert cache.get_all(models, CONTRIB, X.shape[1]) is group
    assert group[1] is cache.get(id(models[1]), models[1], CONTRIB, X.shape[1])
    assert cache.get_all(models, RAW, X.shape[1]) is not group
    # another group of the same type and width (an ensemble's spread model beside its
    # members) gets its own predictors, not the first group's
    other = cache.get_all(models[:1], CONTRIB, X.shape[1])
    assert len(other) == 1 and other[0] is group[0]
    assert cache.get_all(models, CONTRIB, X.shape[1]) is group


def test_wrong_shapes_and_dtypes_are_refused(
    boosters: Models,
) -> None:
    models, X = boosters
    p = FastRowPredictor(models[0], CONTRIB, X.shape[1])
    rows = np.ascontiguousarray(X[:2])
    with pytest.raises(ValueError, match="do not fit"):
        predict_rows((p,), rows, np.empty((2, 1, p.width - 1)))
    with pytest.raises(ValueError, match="do not fit"):
        predict_rows((p,), rows[:, :-1], np.empty((2, 1, p.width)))
    with pytest.raises(ValueError, match="do not fit"):
        predict_rows((p, p), rows, np.empty((2, 1, p.width)))
    with pytest.raises(ValueError, match="C-contiguous float64"):
        predict_rows((p,), np.asfortranarray(rows), np.empty((2, 1, p.width)))
    with pytest.raises(ValueError, match="C-contiguous float64"):
        predict_rows((p,), rows.astype(np.float32), np.empty((2, 1, p.width)))
    with pytest.raises(ValueError, match="float64 row of 5"):
        p(rows[0, :-1])


def test_the_fast_path_uses_the_prediction_thread_setting(
    boosters: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its handle sets LightGBM's process-wide thread count on every call, like any other
    prediction: it must set the same value (see ``boosting.PREDICT_THREADS``)."""
    lib, params = fast_rows._LIB, []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(lib, name)

        def LGBM_BoosterPredictForMatSingleRowFastInit(self, *args: Any) -> Any:
            params.append(args[6].value.decode())
            return lib.LGBM_BoosterPredictForMatSingleRowFastInit(*args)

    monkeypatch.setattr(fast_rows, "_LIB", Recording())
    models, X = boosters
    FastRowPredictor(models[0], RAW, X.shape[1])
    assert params == [f"num_threads={PREDICT_THREADS}"]
