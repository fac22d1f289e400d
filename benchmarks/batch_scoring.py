"""Batch scoring in process: metapredict's Predictor vs MLflow pyfunc vs the raw LightGBM floor.

The same registered tropism champion, loaded natively (``registry.load``) and through MLflow's
generic path (``mlflow.pyfunc.load_model``), scores the same simulated cohort (100,000
patients; optional extras missing as the simulator leaves them). The floor is the fitted
Boosters alone on the already-encoded matrix. Run alone:
``python -m benchmarks.batch_scoring [--quick]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    PartOptions,
    Report,
    Spread,
    Target,
    fmt_num,
    log,
    md_table,
    options,
    parser,
    served_store,
    store_settings,
)

GOAL = 0.8
QUICK_NOTE = "quick mode: 5,000 patients, not the target's size"
#: Largest difference allowed between the predictor's and pyfunc's probabilities (same model).
AGREEMENT_TOLERANCE = 1e-9
#: Seconds for the timed repeats (full mode): as many repeats (2 to 5) as fit.
BUDGET_S = 45.0
FLOOR = "raw LightGBM Boosters on encoded X (floor)"
MATRIX = "Predictor.predict_matrix(encode_frame(frame))"
ENCODE = "predictor.encode_frame(frame) alone"
FRAME = "Predictor.predict(frame)"
BATCH = "Predictor.predict_batch(frame) (with intervals)"
PYFUNC = "mlflow.pyfunc.load_model(...).predict(frame)"


def _time(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(opts: PartOptions, store: Path | None = None) -> Report:
    from metapredict import registry, schema
    from metapredict.registry.store import connect
    from metapredict.simulator import default_config, simulate_cohort

    patients = 5_000 if opts.quick else 100_000
    min_repeats, max_repeats = (2, 2) if opts.quick else (2, 5)
    budget_s = 0.0 if opts.quick else BUDGET_S
    report = Report("batch_scoring", "Batch scoring in process", opts.quick)
    report.command = opts.command
    store_opts = PartOptions(opts.quick, opts.out, store or opts.store, opts.command)
    with served_store(store_opts, log=log) as store_dir:
        settings = store_settings(store_dir)
        started = time.perf_counter()
        predictor = registry.load("tropism", settings=settings)
        native_load = time.perf_counter() - started
        import mlflow.pyfunc

        # pyfunc resolves models:/ against MLflow's process-wide registry URI, which an earlier
        # part (quality trains seed 11 after seed 7) may have left on another store.
        connect(settings)
        started = time.perf_counter()
        pyfunc = mlflow.pyfunc.load_model("models:/metapredict-tropism@champion")
        pyfunc_load = time.perf_counter() - started

    frame = simulate_cohort(patients, 11, default_config())[list(schema.feature_columns())]
    X = predictor.encode_frame(frame)
    boosters = predictor.model.boosters
    methods: dict[str, Callable[[], Any]] = {
        FLOOR: lambda: [b.predict(X, raw_score=True) for b in boosters],
        MATRIX: lambda: predictor.predict_matrix(predictor.encode_frame(frame)),
        FRAME: lambda: predictor.predict(frame),
        BATCH: lambda: predictor.predict_batch(frame),
        PYFUNC: lambda: pyfunc.predict(frame),
    }

    # The pyfunc answers what predict_batch does: each probability and its interval bounds.
    ours = predictor.predict_batch(frame).to_numpy()
    theirs = np.asarray(pyfunc.predict(frame), dtype=float)
    agreement = float(np.max(np.abs(ours - theirs)))
    if not agreement <= AGREEMENT_TOLERANCE:
        raise RuntimeError(
            f"metapredict's predictor and mlflow.pyfunc disagree by up to {agreement:.1e}: they "
            "did not load the same model, so their speeds cannot be compared"
        )

    small = frame.head(500)
    predictor.predict_batch(small)  # warm-up
    pyfunc.predict(small)
    [b.predict(X[:500], raw_score=True) for b in boosters]

    seconds: dict[str, list[float]] = {name: [] for name in methods}
    encode_seconds: list[float] = []
    names = list(methods)
    timed_from = time.perf_counter()
    repeats = 0
    while repeats < max_repeats:
        r = repeats
        round_started = time.perf_counter()
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            seconds[name].append(_time(methods[name]))
        encode_seconds.append(_time(lambda: predictor.encode_frame(frame)))
        log(
            f"  batch scoring round {r + 1}: "
            + ", ".join(f"{n.split('(')[0]} {patients / seconds[n][-1]:,.0f}/s" for n in names)
        )
        repeats += 1
        spent = time.perf_counter() - timed_from
        if repeats >= min_repeats and spent + (time.perf_counter() - round_started) > budget_s:
            break

    rows_per_s = {n: Spread.of([patients / s for s in seconds[n]]) for n in names}
    floor = rows_per_s[FLOOR]
    rows = []
    for n in names:
        ratios = Spread.of(
            [a / b for a, b in zip(seconds[FLOOR], seconds[n], strict=True)]
        )  # per round: (rows/s of n) / (rows/s of floor)
        rows.append(
            (
                n,
                rows_per_s[n].fmt(0),
                Spread.of(seconds[n]).fmt(3),
                ratios.fmt(2),
                fmt_num(rows_per_s[n].median / rows_per_s[PYFUNC].median, 1),
            )
        )
    report.add(
        f"Results ({patients:,} patients, {repeats} repeats)",
        md_table(
            ["method", "rows/s", "seconds", "x raw Boosters", "x pyfunc"],
            rows,
        ),
    )

    def ratio(name: str) -> Spread:
        return Spread.of([a / b for a, b in zip(seconds[FLOOR], seconds[name], strict=True)])

    matrix_ratio, frame_ratio = ratio(MATRIX), ratio(FRAME)
    encode = Spread.of(encode_seconds)
    encode_share = encode.median / Spread.of(seconds[MATRIX]).median
    missed_note = (
        f"encoding the frame (CLR of 22 fractions, category codes) takes about "
        f"{encode_share:.0%} of predict_matrix(encode_frame(...)); the rest is the boosters"
    )

    def target(label: str, measured: Spread) -> Target:
        met = measured.median >= GOAL
        if opts.quick:  # 5,000 patients: fixed costs weigh more than at the target's size
            return Target(label, f">= {GOAL}x", f"{measured.fmt(2)}x", None, QUICK_NOTE)
        return Target(label, f">= {GOAL}x", f"{measured.fmt(2)}x", met, "" if met else missed_note)

    report.targets = [
        target(
            "in-process batch scoring vs raw Boosters (predict_matrix(encode_frame(frame)))",
            matrix_ratio,
        ),
        target("in-process batch scoring vs raw Boosters (predict(frame))", frame_ratio),
    ]
    report.add(
        "Method",
        f"- One process; each method scores all {patients:,} patients once per repeat, methods "
        "alternating (order reversed every other repeat) after a 500-row warm-up. rows/s: "
        "median [p10, p90] over repeats; ratios are per repeat. "
        + (
            f"Repeats: {repeats}.\n"
            if opts.quick
            else f"Repeats: as many as fit {budget_s:.0f} s, at least {min_repeats}, "
            f"at most {max_repeats}.\n"
        )
        + "- The raw floor calls `b.predict(X, raw_score=True)` for each of the "
        f"{len(boosters)} site Boosters on the encoded matrix: no encoding, no calibration, no "
        "sigmoid. The Predictor's `predict_matrix` adds calibration and the sigmoid; "
        "`encode_frame` the CLR and category codes; `predict` a DataFrame around the result; "
        "`predict_batch` the 90 % interval bounds (the spread and centre Boosters); pyfunc "
        "answers what `predict_batch` does and adds MLflow's schema enforcement and "
        "metapredict's pandera validation.\n"
        "- Both loaders agree: max |predict_batch(frame) - pyfunc.predict(frame)| = "
        f"{agreement:.1e}.\n"
        f"- Loading in this process (first load, includes imports): registry.load "
        f"{native_load:.2f} s, mlflow.pyfunc.load_model {pyfunc_load:.2f} s.\n"
        f"- Floor median {floor.median:,.0f} rows/s; {ENCODE}: {encode.fmt(3)} s "
        f"({encode_share:.0%} of predict_matrix(encode_frame(frame))).",
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parser("batch scoring in process").parse_args(argv)
    opts = options(args, "benchmarks.batch_scoring")
    path = run(opts).write(opts.out)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
