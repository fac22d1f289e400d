"""Real cohorts: CIBERSORT(x) result tables, cBioPortal clinical files, expression deconvolution.

Modules, in the order data flows through them:

* :mod:`~metapredict.cohorts.tables`: read delimited text (separator sniffing, clear errors);
* :mod:`~metapredict.cohorts.values`: missing-value tokens and clinical value parsers
  (Yes/No flags, relapse status, AJCC stage, age, cancer type);
* :mod:`~metapredict.cohorts.cibersort`: CIBERSORT / CIBERSORTx result tables -> schema names;
* :mod:`~metapredict.cohorts.cbioportal`: ``data_clinical_patient.txt`` / ``_sample.txt``;
* :mod:`~metapredict.cohorts.mapping`: any CSV/TSV through a TOML column mapping;
* :mod:`~metapredict.cohorts.build`: the join, the report and validation against the schema;
* :mod:`~metapredict.cohorts.expression`: expression matrices (log detection, refusals);
* :mod:`~metapredict.cohorts.deconvolution`: CIBERSORT's nu-SVR method;
* :mod:`~metapredict.cohorts.signatures`: GMT marker-set scores (e.g. ``mdsc_score``).

This package may import :mod:`metapredict.schema` and :mod:`metapredict.cohort_io`, nothing
from training, serving or the registry.
"""

from __future__ import annotations

from typing import Final

from metapredict.cohorts.errors import CohortInputError

#: Upper bound on ``permutations`` of ``deconvolve`` (each costs three SVR fits).
MAX_PERMUTATIONS: Final = 10_000

__all__ = ["MAX_PERMUTATIONS", "CohortInputError"]
