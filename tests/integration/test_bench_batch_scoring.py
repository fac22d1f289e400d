"""The in-process batch-scoring benchmark runs against a registered champion and compares like
with like: the pyfunc answers probabilities and interval bounds, as ``predict_batch`` does.

The part broke unnoticed when the pyfunc's answer gained the interval columns (it compared 8
columns with 24); ``make bench`` is not part of ``make test``, so this runs it in quick mode.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import batch_scoring
from benchmarks.common import PartOptions
from tests.support import TrainedStore

pytestmark = pytest.mark.slow


def test_the_batch_scoring_part_compares_the_pyfunc_with_predict_batch(
    mlflow_store: TrainedStore, tmp_path: Path
) -> None:
    store = Path(mlflow_store.settings.tracking_uri.removeprefix("sqlite:///")).parent
    opts = PartOptions(quick=True, out=tmp_path, store=store, command="test")

    text = batch_scoring.run(opts).render()

    for method in (
        batch_scoring.FLOOR,
        batch_scoring.MATRIX,
        batch_scoring.FRAME,
        batch_scoring.BATCH,
        batch_scoring.PYFUNC,
    ):
        assert f"| {method} |" in text
    agreement = text.split("pyfunc.predict(frame)| = ")[1].split(".\n")[0]
    assert float(agreement) <= batch_scoring.AGREEMENT_TOLERANCE
