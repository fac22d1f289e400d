"""The two prediction tasks (a module of its own so the CLI can name them without heavy imports)."""

from __future__ import annotations

from typing import Literal

Task = Literal["tropism", "dormancy"]
TASKS: tuple[Task, ...] = ("tropism", "dormancy")

#: Horizons (months) at which the dormancy task predicts (and is scored on) cumulative relapse
#: risk.
HORIZONS: tuple[int, ...] = (36, 60, 120)

#: Stage groups in order (the schema's vocabulary; repeated here so this module stays light,
#: and checked against ``schema.STAGES`` by a test).
_STAGES = ("I", "II", "III", "IV")


def stages_for(task: Task) -> tuple[str, ...]:
    """The stages a task answers for: dormancy is for resected, non-metastatic primaries, so
    stage IV (metastatic at diagnosis) is never a dormancy patient."""
    return _STAGES[:3] if task == "dormancy" else _STAGES
