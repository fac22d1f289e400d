"""The two prediction tasks (a module of its own so the CLI can name them without heavy imports)."""

from __future__ import annotations

from typing import Literal

Task = Literal["tropism", "dormancy"]
TASKS: tuple[Task, ...] = ("tropism", "dormancy")
