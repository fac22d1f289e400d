"""The ceiling any model can reach on a simulated cohort: its oracle's scores.

The oracle knows each patient's true probabilities (``oracle_*`` columns), including the true
values of extras that are missing in the observed data, so no model trained on observed columns
can beat it beyond sampling noise. Model scores are reported as a ratio to these.

Site AUROCs are scored over every patient with a distant relapse, including those metastatic at
diagnosis (stage IV: the tropism task keeps them). Harrell's C is scored over the patients with
a resected primary only: the dormancy task is for stage I-III, and a stage IV patient (relapse
at month 0, oracle risk 1) would be a trivially concordant pair with everyone else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from metapredict import metrics, schema


@dataclass(frozen=True)
class OracleScores:
    site_auroc: dict[str, float]
    macro_auroc: float
    harrell_c: float
    n_relapsed: int
    n_patients: int
    n_metastatic_at_diagnosis: int

    def as_metrics(self) -> dict[str, float]:
        out = {f"auroc_{site}": v for site, v in self.site_auroc.items()}
        out["macro_auroc"] = self.macro_auroc
        out["harrell_c"] = self.harrell_c
        return out


def score_oracle(cohort: pd.DataFrame) -> OracleScores:
    """Per-site AUROC among relapsed patients (stage IV included) and Harrell's C over the
    patients with a resected primary (stage IV excluded)."""
    months, event = schema.survival_columns()
    relapsed = cohort[cohort[event].astype(bool)]
    metastatic = schema.metastatic_at_diagnosis(cohort)
    resected = cohort[~metastatic]
    y = relapsed[list(schema.site_columns())].to_numpy(dtype=bool)
    p = relapsed[[f"oracle_{c}" for c in schema.site_columns()]].to_numpy(dtype=float)
    site_auroc = {s: metrics.auroc(y[:, j], p[:, j]) for j, s in enumerate(schema.sites())}
    risk = resected[f"oracle_risk_{metrics.CONCORDANCE_HORIZON}"].to_numpy(dtype=float)
    return OracleScores(
        site_auroc=site_auroc,
        macro_auroc=float(np.nanmean(list(site_auroc.values()))),
        harrell_c=metrics.harrell_c(resected[months], resected[event], risk),
        n_relapsed=len(relapsed),
        n_patients=len(cohort),
        n_metastatic_at_diagnosis=int(metastatic.sum()),
    )
