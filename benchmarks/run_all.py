"""Every benchmark in one go (``make bench``): results in benchmarks/results/*.md + summary.md.

Order: quality (trains both tasks on seeds 7 and 11 into throwaway stores; seed 7's champions
are the default-config models the next parts serve), serving, replicas (``--workers 2`` vs
1 and a champion flip across two replicas), batch scoring, batch predict
(``metapredict predict`` on 5,000,000 patients, and Spark), cold start,
adversarial bodies (bounded work per request),
deconvolution (``metapredict deconvolve``, needs no store), intervals (trains 500-patient
models, reuses seed 7's 20,000-patient champions), small cohorts (150 to 2,000 patients, before
and after the size rule), and last training scaling, which gets what is left of the time budget
(see benchmarks/README.md).
Run: ``python -m benchmarks.run_all [--quick] [--budget-seconds S]``.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import (
    adversarial,
    batch_predict,
    batch_scoring,
    cold_start,
    deconvolution,
    intervals,
    quality,
    replicas,
    serving,
    small_cohorts,
    training_scaling,
)
from benchmarks.common import (
    PartOptions,
    Report,
    Target,
    log,
    md_table,
    options,
    parser,
    targets_table,
    work_dir,
)

#: Seconds for the whole run; training scaling gets what the other parts leave of it (the
#: other parts took about 2,200 s on 2 cores on 2026-12-05).
FULL_BUDGET_S = 2_700.0
QUICK_BUDGET_S = 300.0
#: Training scaling always gets at least this much (full: its 1k and 10k runs, which take about
#: 3 minutes with the repeated CV and the interval ensembles, and a 100k run when it fits).
SCALING_FLOOR_S = 480.0
QUICK_SCALING_FLOOR_S = 60.0


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("all benchmarks")
    p.add_argument(
        "--budget-seconds",
        type=float,
        default=None,
        help=f"time budget for the whole run (default {FULL_BUDGET_S:.0f} s, "
        f"quick {QUICK_BUDGET_S:.0f} s)",
    )
    args = p.parse_args(argv)
    opts = options(args, "benchmarks.run_all")
    budget = args.budget_seconds or (QUICK_BUDGET_S if opts.quick else FULL_BUDGET_S)
    started = time.perf_counter()
    summary = Report("summary", "Benchmarks: summary", opts.quick)
    summary.command = opts.command
    rows: list[tuple[str, str, str, str]] = []
    all_targets: list[Target] = []
    failed = False

    def part(name: str, module: str, fn: Callable[[PartOptions], Report]) -> None:
        nonlocal failed
        part_opts = PartOptions(opts.quick, opts.out, None, opts.command + f"  # part {module}")
        t0 = time.perf_counter()
        log(f"== {name} ==")
        try:
            report = fn(part_opts)
            path = report.write(opts.out)
        except Exception as err:  # one broken part must not hide the others' results
            failed = True
            log(traceback.format_exc())
            rows.append((name, f"{time.perf_counter() - t0:.0f}", "FAILED", f"{err!r}"[:200]))
            return
        took = time.perf_counter() - t0
        log(f"== {name}: {took:.0f} s, wrote {path}")
        rows.append((name, f"{took:.0f}", f"[{path.name}]({path.name})", ""))
        all_targets.extend(
            Target(f"{name}: {t.name}", t.goal, t.measured, t.met, t.note) for t in report.targets
        )

    with work_dir("metapredict-bench-all-") as tmp:
        stores = tmp / "quality"
        part("quality", "benchmarks.quality", lambda o: quality.run(o, store_root=stores))
        seed7 = stores / "seed-7"
        store: Path | None = seed7 if (seed7 / "mlflow.db").exists() else None
        part("serving", "benchmarks.serving", lambda o: serving.run(o, store=store))
        part("replicas", "benchmarks.replicas", lambda o: replicas.run(o, store=store))
        part(
            "batch scoring", "benchmarks.batch_scoring", lambda o: batch_scoring.run(o, store=store)
        )
        part(
            "batch predict", "benchmarks.batch_predict", lambda o: batch_predict.run(o, store=store)
        )
        part("cold start", "benchmarks.cold_start", lambda o: cold_start.run(o, store=store))
        part("adversarial", "benchmarks.adversarial", lambda o: adversarial.run(o, store=store))
        part("deconvolution", "benchmarks.deconvolution", deconvolution.run)
        part("small cohorts", "benchmarks.small_cohorts", small_cohorts.run)
        part("intervals", "benchmarks.intervals", lambda o: intervals.run(o, store=store))
        left = budget - (time.perf_counter() - started)
        scaling_budget = max(left, QUICK_SCALING_FLOOR_S if opts.quick else SCALING_FLOOR_S)
        log(f"training scaling gets {scaling_budget:.0f} s")
        part(
            "training scaling",
            "benchmarks.training_scaling",
            lambda o: training_scaling.run(o, budget_s=scaling_budget),
        )

    summary.add("Targets", targets_table(all_targets))
    summary.add("Parts", md_table(["part", "seconds", "results", "error"], rows))
    summary.notes.append(
        f"Total {time.perf_counter() - started:.0f} s (budget {budget:.0f} s; the training "
        "scaling part gets what the others leave)."
    )
    path = summary.write(opts.out)
    log(f"wrote {path} in {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
