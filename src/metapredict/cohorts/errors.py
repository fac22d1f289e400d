"""The one error type for unusable input files (the CLI prints it and exits non-zero)."""

from __future__ import annotations


class CohortInputError(ValueError):
    """An input file cannot be turned into a cohort; the message says what to fix."""
