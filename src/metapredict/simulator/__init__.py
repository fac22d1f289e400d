"""The literature-grounded cohort simulator (the embedded default cohort)."""

from metapredict.simulator.config import (
    SIMULATOR_VERSION,
    SimulatorConfig,
    default_config,
    load_config,
)
from metapredict.simulator.generate import simulate_cohort
from metapredict.simulator.oracle import OracleScores, score_oracle

__all__ = [
    "SIMULATOR_VERSION",
    "OracleScores",
    "SimulatorConfig",
    "default_config",
    "load_config",
    "score_oracle",
    "simulate_cohort",
]
