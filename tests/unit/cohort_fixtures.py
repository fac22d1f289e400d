"""Builders of real-format input files for the cohort importers and deconvolution tests.

Everything is synthetic and written in the formats users bring: cBioPortal clinical files (four
``#`` metadata lines, tab-separated), CIBERSORT result tables (sample id, 22 LM22 labels,
P-value, Correlation, RMSE), and expression matrices mixed from a made-up signature matrix with
known fractions. LM22 itself is licensed and never shipped: the signature here is random.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from metapredict import schema

LM22_LABELS: tuple[str, ...] = tuple(schema.lm22_labels())


def dirichlet_fractions(n: int, seed: int, *, alpha: float = 0.6) -> np.ndarray:
    """``n`` x 22 relative fractions (rows sum to 1), a sparse-ish Dirichlet draw."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(len(LM22_LABELS), alpha), size=n)


def write_cibersort_table(
    path: Path,
    sample_ids: Sequence[str],
    fractions: np.ndarray,
    *,
    p_values: Sequence[float] | None = None,
    id_header: str = "Mixture",
    sep: str = "\t",
    absolute_score: bool = False,
    extra_columns: Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """A CIBERSORT(x) result table as the tools write it."""
    n = len(sample_ids)
    table = pd.DataFrame(fractions, columns=list(LM22_LABELS))
    table.insert(0, id_header, list(sample_ids))
    table["P-value"] = list(p_values) if p_values is not None else [0.0] * n
    table["Correlation"] = np.linspace(0.9, 0.6, n)
    table["RMSE"] = np.linspace(0.5, 0.9, n)
    if absolute_score:
        table["Absolute score (sig.score)"] = fractions.sum(axis=1)
    for name, values in (extra_columns or {}).items():
        table[name] = list(values)
    table.to_csv(path, sep=sep, index=False, float_format="%.6f")
    return path


def patient_row(patient_id: str, **overrides: str) -> dict[str, str]:
    """One cBioPortal patient row: stage II breast cancer, relapsed to bone at 40.5 months."""
    row = {
        "PATIENT_ID": patient_id,
        "AGE": "55",
        "AJCC_PATHOLOGIC_TUMOR_STAGE": "Stage IIA",
        "DFS_MONTHS": "40.5",
        "DFS_STATUS": "1:Recurred/Progressed",
        "OS_MONTHS": "60.2",
        "OS_STATUS": "0:LIVING",
    }
    row.update(overrides)
    return row


def sample_row(sample_id: str, patient_id: str, **overrides: str) -> dict[str, str]:
    """One cBioPortal sample row: primary breast IDC, bone-only distant metastasis."""
    row = {
        "SAMPLE_ID": sample_id,
        "PATIENT_ID": patient_id,
        "SAMPLE_TYPE": "Primary",
        "CANCER_TYPE": "Breast Cancer",
        "CANCER_TYPE_DETAILED": "Breast Invasive Ductal Carcinoma",
    }
    for info in schema.columns(schema.Cohort):
        if info.group == "site":
            row[f"DMETS_DX_{info.label}"] = "Yes" if info.name == "site_bone" else "No"
    row.update(overrides)
    return row


def write_cbioportal(
    path: Path, rows: Iterable[Mapping[str, str]], *, header_lines: int = 4
) -> Path:
    """A cBioPortal clinical file: ``header_lines`` '#' lines, column ids, rows (tab-separated)."""
    rows = list(rows)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    meta = [
        ["#" + c.replace("_", " ").title() for c in columns],
        ["#" + f"description of {c}" for c in columns],
        ["#STRING"] + ["STRING"] * (len(columns) - 1),
        ["#1"] + ["1"] * (len(columns) - 1),
    ]
    lines = ["\t".join(m) for m in (meta * 2)[:header_lines]]
    lines.append("\t".join(columns))
    lines += ["\t".join(row.get(c, "") for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def synthetic_signature(n_genes: int = 400, seed: int = 0) -> pd.DataFrame:
    """Genes x 22 LM22 labels, positive, each cell type with its own marker genes."""
    rng = np.random.default_rng(seed)
    k = len(LM22_LABELS)
    base = rng.lognormal(mean=2.0, sigma=1.0, size=(n_genes, k))
    markers = rng.integers(0, k, size=n_genes)
    base[np.arange(n_genes), markers] *= rng.uniform(8.0, 40.0, size=n_genes)
    genes = [f"SYN{i:04d}" for i in range(n_genes)]
    return pd.DataFrame(base, index=pd.Index(genes, name="GeneSymbol"), columns=list(LM22_LABELS))


def mix(
    signature: pd.DataFrame,
    fractions: np.ndarray,
    *,
    noise_sd: float = 0.0,
    seed: int = 0,
    background_genes: int = 0,
) -> pd.DataFrame:
    """Expression (genes x samples) = signature @ fractions, times log-normal noise.

    ``background_genes`` adds non-signature genes (like the rest of the transcriptome).
    """
    rng = np.random.default_rng(seed)
    values = signature.to_numpy() @ fractions.T
    if noise_sd > 0:
        values = values * rng.lognormal(0.0, noise_sd, size=values.shape)
    samples = [f"S{j:03d}" for j in range(fractions.shape[0])]
    frame = pd.DataFrame(values, index=signature.index, columns=samples)
    if background_genes:
        extra = pd.DataFrame(
            rng.lognormal(2.0, 1.5, size=(background_genes, len(samples))),
            index=[f"BG{i:05d}" for i in range(background_genes)],
            columns=samples,
        )
        frame = pd.concat([frame, extra])
    frame.index.name = "GeneSymbol"
    return frame


def write_matrix(path: Path, frame: pd.DataFrame, *, sep: str = "\t") -> Path:
    frame.to_csv(path, sep=sep, float_format="%.6g")
    return path
