"""Cancer-type labels: the one table from study text to metapredict's normalised labels.

Cancer types are open: any label is accepted and normalised to lowercase snake case
(``"Head and Neck"`` -> ``head_and_neck``). Text that names a known type in another spelling
(cBioPortal ``CANCER_TYPE`` / ``CANCER_TYPE_DETAILED``, OncoTree names and codes, TCGA study
codes) maps through :data:`KNOWN_LABELS` first, so a breast cohort written as "Breast Invasive
Ductal Carcinoma" and one written as "BRCA" both train and serve as ``breast``. Unknown text is
kept as given, normalised.

The table is listed in ``docs/real-cohorts.md``; it is deliberately specific: a subtype with a
different natural history keeps its own label ("Uveal Melanoma" is ``uveal_melanoma``, not
``melanoma``; "Lung Squamous Cell Carcinoma" is ``lung_squamous``, not
``lung_adenocarcinoma``).
"""

from __future__ import annotations

import re
from typing import Final

_NOT_LABEL: Final = re.compile(r"[^a-z0-9]+")

#: Study text (compared lower-case, spaces folded) -> normalised label.
KNOWN_LABELS: Final[dict[str, str]] = {
    # breast
    "breast": "breast",
    "breast cancer": "breast",
    "breast carcinoma": "breast",
    "invasive breast carcinoma": "breast",
    "breast invasive carcinoma": "breast",
    "breast invasive ductal carcinoma": "breast",
    "breast invasive lobular carcinoma": "breast",
    "breast mixed ductal and lobular carcinoma": "breast",
    "breast invasive mixed mucinous carcinoma": "breast",
    "breast invasive carcinoma, nos": "breast",
    "brca": "breast",
    "idc": "breast",
    "ilc": "breast",
    "mdlc": "breast",
    # colorectal
    "colorectal": "colorectal",
    "colorectal cancer": "colorectal",
    "colorectal adenocarcinoma": "colorectal",
    "colon adenocarcinoma": "colorectal",
    "rectal adenocarcinoma": "colorectal",
    "colon cancer": "colorectal",
    "rectal cancer": "colorectal",
    "mucinous adenocarcinoma of the colon and rectum": "colorectal",
    "coad": "colorectal",
    "read": "colorectal",
    "coadread": "colorectal",
    # lung: adenocarcinoma and squamous keep separate labels
    "lung adenocarcinoma": "lung_adenocarcinoma",
    "luad": "lung_adenocarcinoma",
    "lung squamous cell carcinoma": "lung_squamous",
    "lusc": "lung_squamous",
    "small cell lung cancer": "small_cell_lung",
    "sclc": "small_cell_lung",
    # melanoma (cutaneous); uveal and mucosal melanoma are other diseases
    "melanoma": "melanoma",
    "cutaneous melanoma": "melanoma",
    "skin cutaneous melanoma": "melanoma",
    "melanoma of unknown primary": "melanoma",
    "skcm": "melanoma",
    "mel": "melanoma",
    "uveal melanoma": "uveal_melanoma",
    "uvm": "uveal_melanoma",
    "mucosal melanoma": "mucosal_melanoma",
    "mucosal melanoma of the vulva/vagina": "mucosal_melanoma",
    # prostate
    "prostate cancer": "prostate",
    "prostate adenocarcinoma": "prostate",
    "prad": "prostate",
    # pancreatic (exocrine); neuroendocrine tumours are another disease
    "pancreatic": "pancreatic",
    "pancreatic cancer": "pancreatic",
    "pancreatic adenocarcinoma": "pancreatic",
    "pancreatic ductal adenocarcinoma": "pancreatic",
    "paad": "pancreatic",
    "pancreatic neuroendocrine tumor": "pancreatic_neuroendocrine",
    "panet": "pancreatic_neuroendocrine",
    # gastric
    "gastric": "gastric",
    "gastric cancer": "gastric",
    "stomach cancer": "gastric",
    "stomach adenocarcinoma": "gastric",
    "gastric adenocarcinoma": "gastric",
    "stad": "gastric",
    "esophagogastric cancer": "esophagogastric",
    "esophageal adenocarcinoma": "esophageal",
    "esca": "esophageal",
    # ovarian
    "ovarian cancer": "ovarian",
    "ovarian carcinoma": "ovarian",
    "ovarian epithelial tumor": "ovarian",
    "high-grade serous ovarian cancer": "ovarian",
    "serous ovarian cancer": "ovarian",
    "ov": "ovarian",
    "hgsoc": "ovarian",
    # renal
    "renal": "renal",
    "renal cell carcinoma": "renal",
    "renal clear cell carcinoma": "renal",
    "kidney renal clear cell carcinoma": "renal",
    "kidney cancer": "renal",
    "kirc": "renal",
    "ccrcc": "renal",
    # head and neck
    "head and neck cancer": "head_and_neck",
    "head and neck squamous cell carcinoma": "head_and_neck",
    "head and neck carcinoma": "head_and_neck",
    "hnsc": "head_and_neck",
    # others that cBioPortal studies name often
    "bladder cancer": "bladder",
    "bladder urothelial carcinoma": "bladder",
    "blca": "bladder",
    "hepatocellular carcinoma": "hepatocellular",
    "hcc": "hepatocellular",
    "lihc": "hepatocellular",
    "endometrial cancer": "endometrial",
    "uterine endometrioid carcinoma": "endometrial",
    "ucec": "endometrial",
    "thyroid cancer": "thyroid",
    "papillary thyroid cancer": "thyroid",
    "thca": "thyroid",
}


def _key(text: str) -> str:
    return " ".join(text.strip().lower().split())


def snake_case(text: str) -> str:
    """Lowercase snake case: runs of anything but letters and digits become one underscore."""
    return _NOT_LABEL.sub("_", text.strip().lower()).strip("_")


def known_label(text: str) -> str | None:
    """The table's label for ``text``, or None when the table does not know it."""
    return KNOWN_LABELS.get(_key(text))


def normalise_cancer_type(text: str) -> str:
    """The label for ``text``: the table's, else ``text`` in lowercase snake case.

    Raises ``ValueError`` for text with no letter or digit (nothing to make a label of).
    """
    label = known_label(text) or snake_case(text)
    if not label:
        raise ValueError(f"not a cancer type label: {text!r}")
    return label
