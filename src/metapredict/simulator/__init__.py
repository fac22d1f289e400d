"""The literature-grounded cohort simulator (the embedded default cohort)."""

from metapredict.simulator.config import (
    CANCER_TYPES,
    SIMULATOR_VERSION,
    SimulatorConfig,
    default_config,
    load_config,
)
from metapredict.simulator.generate import CLR_PSEUDOCOUNT, complete_patients, simulate_cohort
from metapredict.simulator.oracle import OracleScores, score_oracle

__all__ = [
    "CANCER_TYPES",
    "CLR_PSEUDOCOUNT",
    "SIMULATOR_VERSION",
    "OracleScores",
    "SimulatorConfig",
    "complete_patients",
    "default_config",
    "load_config",
    "score_oracle",
    "simulate_cohort",
]
