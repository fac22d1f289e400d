"""The simulator's typed configuration: defaults, provenance, TOML overrides, vocabulary checks."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from metapredict import cancer_types, features, schema
from metapredict.simulator import (
    CANCER_TYPES,
    CLR_PSEUDOCOUNT,
    SimulatorConfig,
    default_config,
    load_config,
)
from metapredict.simulator import generate as simulator_generate
from metapredict.simulator.config import Effect, Interaction

#: biology.md: "Human effect sizes are modest: plant roughly 0.2-0.7 log-odds per SD."
LITERATURE_BAND = (0.2, 0.7)


def all_effects(config: SimulatorConfig) -> dict[str, Effect | Interaction]:
    """Every main effect and interaction of ``config``, keyed by where it sits."""
    rel = config.relapse
    out: dict[str, Effect | Interaction] = {}
    for table, items in (
        ("relapse.dissemination_effects", rel.dissemination_effects),
        ("relapse.dissemination_interactions", rel.dissemination_interactions),
        ("relapse.dormancy_effects", rel.dormancy_effects),
        ("relapse.dormancy_interactions", rel.dormancy_interactions),
        *(
            (f"sites.{organ}.{kind}", getattr(site, kind))
            for organ, site in config.sites.items()
            for kind in ("effects", "interactions")
        ),
    ):
        for i, item in enumerate(items):
            name = item.feature if isinstance(item, Effect) else "*".join(item.features)
            out[f"{table}[{i}]:{name}"] = item
    return out


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "override.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_validate_and_round_trip() -> None:
    config = default_config()
    assert SimulatorConfig.model_validate(config.model_dump()) == config
    assert load_config(None) == config
    assert set(config.sites) == set(schema.sites())


def test_every_effect_names_a_schema_feature_and_has_a_source() -> None:
    features = set(schema.lm22_columns()) | set(schema.extra_columns())
    effects = all_effects(default_config())
    assert len(effects) >= 15  # biology.md's table has 15 rows
    for where, effect in effects.items():
        named = {effect.feature} if isinstance(effect, Effect) else set(effect.features)
        assert named <= features, where
        assert effect.source.strip(), f"{where} has no source"


def test_every_effect_in_biology_table_is_planted() -> None:
    """Each (cell type, site) row of biology.md's effect table has an effect in the defaults."""
    config = default_config()
    planted = {(e.feature, organ) for organ, s in config.sites.items() for e in s.effects}
    expected = {
        ("neutrophils", "lung"),
        ("t_cells_gamma_delta", "lung"),
        ("t_cells_gamma_delta", "distant_lymph_node"),
        ("monocytes", "lung"),
        ("monocytes", "brain"),
        ("macrophages_m2", "liver"),
        ("macrophages_m2", "brain"),
        ("nk_cells_activated", "liver"),
        ("t_cells_regulatory", "lung"),
        ("t_cells_regulatory", "bone"),
        ("t_cells_cd4_memory_activated", "bone"),
        ("mdsc_score", "bone"),
        ("platelet_count", "lung"),
    }
    assert expected <= planted
    dormancy: dict[str, list[float]] = {}
    for e in config.relapse.dormancy_effects:
        dormancy.setdefault(e.feature, []).append(e.per_sd)
    assert all(v < 0 for v in dormancy["t_cells_cd8"])  # longer dormancy (Eyles 2010)
    assert all(v < 0 for v in dormancy["nk_cells_activated"])  # longer dormancy (Correia 2021)
    assert all(v > 0 for v in dormancy["neutrophils"])  # NETs awaken cells (Albrengues 2018)


_DEFAULT_EFFECTS = all_effects(default_config())


@pytest.mark.parametrize("where", list(_DEFAULT_EFFECTS))
def test_default_effect_sizes_lie_in_the_literature_band(where: str) -> None:
    low, high = LITERATURE_BAND
    assert low <= abs(_DEFAULT_EFFECTS[where].per_sd) <= high


def test_combined_effect_per_cancer_type_lies_in_the_literature_band() -> None:
    """Several entries may name the same feature for the same outcome (e.g. one for all
    primaries plus one restricted to some): what a patient gets is their sum, which must stay
    in the band too."""
    config = default_config()
    outcomes = {
        "relapse.dissemination": config.relapse.dissemination_effects,
        "relapse.dormancy": config.relapse.dormancy_effects,
        **{f"sites.{organ}": site.effects for organ, site in config.sites.items()},
    }
    low, high = LITERATURE_BAND
    outside = {}
    for outcome, effects in outcomes.items():
        total: dict[tuple[str, str], float] = {}
        for e in effects:
            for cancer_type in e.cancer_types or CANCER_TYPES:
                key = (e.feature, cancer_type)
                total[key] = total.get(key, 0.0) + e.per_sd
        outside |= {
            f"{outcome}:{feature}@{cancer_type}": round(size, 3)
            for (feature, cancer_type), size in total.items()
            if size != 0 and not low <= abs(size) <= high
        }
    assert not outside, f"combined effects outside {LITERATURE_BAND}: {outside}"


# ------------------------------------------------------------------------------------------------
# TOML overrides


def test_toml_override_changes_exactly_what_it_names(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[relapse.dissemination_logit]\nbreast = -0.5\n")
    loaded = load_config(path)

    assert loaded.relapse.dissemination_logit["breast"] == -0.5
    expected: dict[str, Any] = default_config().model_dump()
    expected["relapse"]["dissemination_logit"]["breast"] = -0.5
    assert loaded.model_dump() == expected


def test_toml_arrays_replace_the_default_list(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[[sites.lung.effects]]\nfeature = "neutrophils"\nper_sd = 0.7\nsource = "sensitivity"\n',
    )
    loaded = load_config(path)
    defaults = default_config()

    assert loaded.sites["lung"].effects == [
        Effect(feature="neutrophils", per_sd=0.7, source="sensitivity")
    ]
    assert loaded.sites["lung"].base_rate == defaults.sites["lung"].base_rate
    assert loaded.sites["lung"].interactions == defaults.sites["lung"].interactions
    assert {k: v for k, v in loaded.sites.items() if k != "lung"} == {
        k: v for k, v in defaults.sites.items() if k != "lung"
    }


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        pytest.param(
            '[[sites.lung.effects]]\nfeature = "neutrophilz"\nper_sd = 0.4\nsource = "typo"\n',
            "neutrophilz",
            id="unknown_effect_feature",
        ),
        pytest.param(
            '[[relapse.dormancy_interactions]]\nfeatures = ["t_cells_cd8", "nk_cells"]\n'
            'per_sd = 0.3\nsource = "typo"\n',
            "nk_cells",
            id="unknown_interaction_feature",
        ),
        pytest.param(
            "[composition.inflammation_loading]\nneutrophil = 0.4\n",
            "neutrophil",
            id="unknown_cell_type",
        ),
        pytest.param(
            "[composition.base_fraction]\nmacrophages = 0.1\n",
            "macrophages",
            id="unknown_cell_in_base_fraction",
        ),
        pytest.param(
            "[relapse.dissemination_logit]\nglioma = 0.5\n",
            "glioma",
            id="unknown_cancer_type",
        ),
        pytest.param(
            "[relapse]\ndissemination_logits = {}\n",
            "dissemination_logits",
            id="unknown_parameter",
        ),
    ],
)
def test_toml_naming_an_unknown_thing_is_rejected_by_name(
    tmp_path: Path, toml: str, named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        load_config(write_toml(tmp_path, toml))
    assert named in str(caught.value)


def test_malformed_toml_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"(?i)line 1"):
        load_config(write_toml(tmp_path, "[relapse.dissemination_logit\nbreast = -0.5\n"))


# ------------------------------------------------------------------------------------------------
# The simulator's own vocabulary and its link to the features


def test_simulator_cancer_types_are_normalised_known_labels() -> None:
    """The schema has no cancer-type list any more; the simulator's labels are what
    metapredict.cancer_types makes of the same study text, so simulated and real cohorts share
    labels."""
    assert {"breast", "colorectal", "lung_adenocarcinoma", "melanoma", "prostate"} <= set(
        CANCER_TYPES
    )
    assert {"pancreatic", "gastric", "renal"} <= set(CANCER_TYPES)
    assert len(set(CANCER_TYPES)) == len(CANCER_TYPES)
    known = set(cancer_types.KNOWN_LABELS.values())
    for label in CANCER_TYPES:
        assert re.fullmatch(schema.CANCER_TYPE_PATTERN, label), label
        assert label in known, label
        assert cancer_types.normalise_cancer_type(label) == label


def test_clr_pseudocount_equals_the_features_one() -> None:
    """The planted effects act on the CLR the models compute: same pseudocount."""
    assert CLR_PSEUDOCOUNT == features.CLR_PSEUDOCOUNT
    fractions = np.array([[0.0, 0.25, 0.75], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(
        simulator_generate.observed_clr(fractions), features.clr_rows(fractions), atol=1e-12
    )


def test_the_simulator_does_not_import_features() -> None:
    """Data flow one way (simulator -> schema -> features): no import back."""
    package = Path(simulator_generate.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n.startswith("metapredict.features") for n in names), path.name


# ------------------------------------------------------------------------------------------------
# Detection (exact zeros), stage IV, missingness: defaults and validation


def _detection_config(floor: float, *, quality_sd: float = 0.0, enabled: bool = True) -> Any:
    config = default_config()
    detection = config.detection.model_copy(
        update={
            "floor": dict.fromkeys(schema.lm22_columns(), floor),
            "sample_quality_sd": quality_sd,
            "enabled": enabled,
        }
    )
    return config.model_copy(update={"detection": detection})


def test_detection_zeroes_fractions_below_the_floor_and_renormalises() -> None:
    latent = np.full((2, 22), 0.01)
    latent[0, 0], latent[0, 1] = 0.60, 0.20  # row 0: 20 cells at 0.01, below a 0.02 floor
    latent[1] = 1.0 / 22  # row 1: every cell above the floor
    latent[0] /= latent[0].sum()
    observed = simulator_generate.detect(_detection_config(0.02), latent, np.zeros(2))

    np.testing.assert_allclose(observed.sum(axis=1), 1.0, atol=1e-12)
    assert (observed[0, 2:] == 0.0).all()
    np.testing.assert_allclose(observed[0, :2], [0.75, 0.25])
    np.testing.assert_allclose(observed[1], latent[1])


def test_detection_keeps_the_largest_cell_and_scales_with_sample_quality() -> None:
    latent = np.full((2, 22), 1.0 / 22)
    latent[:, 3] += 0.01
    latent /= latent.sum(axis=1, keepdims=True)
    # Every cell is below a floor of 0.5: only the largest survives, and the row sums to 1.
    only = simulator_generate.detect(_detection_config(0.5), latent, np.zeros(2))
    np.testing.assert_array_equal(only[:, 3], [1.0, 1.0])
    # A floor of 0.03 keeps everything at quality 0 but loses cells at quality +2 (sd 0.5).
    quality = np.array([0.0, 2.0])
    varied = simulator_generate.detect(_detection_config(0.03, quality_sd=0.5), latent, quality)
    assert (varied[0] > 0).all()
    assert (varied[1] == 0).sum() == 21


def test_detection_switched_off_reports_the_latent_fractions() -> None:
    latent = np.full((1, 22), 1.0 / 22)
    observed = simulator_generate.detect(_detection_config(0.5, enabled=False), latent, np.zeros(1))
    np.testing.assert_array_equal(observed, latent)


def test_default_stage_weights_cover_stage_iv_and_dissemination_only_resected() -> None:
    config = default_config()
    for cancer_type, weights in config.clinical.stage_weights.items():
        assert set(weights) == set(schema.STAGES), cancer_type
        assert weights[schema.METASTATIC_STAGE] > 0, cancer_type
    assert set(config.relapse.stage_logit) == {"I", "II", "III"}
    assert config.clinical.missing_rate == {"age_years": 0.05, "stage": 0.08}


def test_reference_scales_are_deterministic() -> None:
    config = default_config()
    first = simulator_generate.reference_scales(config)
    simulator_generate._reference_scales_cached.cache_clear()
    again = simulator_generate.reference_scales(config)
    assert first == again


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        pytest.param("[clinical.missing_rate]\nstage = 1.5\n", "stage", id="rate_above_one"),
        pytest.param("[clinical.missing_rate]\ngrade = 0.1\n", "grade", id="unknown_column"),
        pytest.param("[extras.missing_rate]\nmdsc_score = -0.1\n", "mdsc_score", id="negative"),
        pytest.param("[detection.floor]\nmacrophages = 0.01\n", "macrophages", id="floor_cell"),
        pytest.param("[detection.floor]\neosinophils = -0.01\n", "floor", id="floor_negative"),
        pytest.param("[relapse.stage_logit]\nIV = 2.0\n", "IV", id="stage_iv_disseminates"),
        pytest.param("[clinical.stage_weights.breast]\nV = 0.1\n", "V", id="unknown_stage_weight"),
        pytest.param(
            "[clinical.stage_weights.renal]\nI = 0.0\nII = 0.0\nIII = 0.0\nIV = 0.0\n",
            "stage_weights.renal",
            id="stage_weights_all_zero",
        ),
    ],
)
def test_invalid_clinical_and_detection_settings_are_rejected_by_name(
    tmp_path: Path, toml: str, named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        load_config(write_toml(tmp_path, toml))
    assert named in str(caught.value)


def test_toml_can_switch_detection_and_missingness_off(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        "[detection]\nenabled = false\n[clinical.missing_rate]\nage_years = 0.0\nstage = 0.0\n",
    )
    loaded = load_config(path)
    assert loaded.detection.enabled is False
    assert loaded.clinical.missing_rate == {"age_years": 0.0, "stage": 0.0}


def test_default_floors_are_the_calibrated_ones() -> None:
    """DETECTION_FLOOR is what calibrate_detection_floors gives for DETECTION_ZERO_SHARE (up
    to rounding and the sampling noise of a quantile)."""
    from metapredict.simulator.config import DETECTION_FLOOR, DETECTION_ZERO_SHARE

    config = default_config()
    floors = simulator_generate.calibrate_detection_floors(
        config, DETECTION_ZERO_SHARE, patients=50_000
    )
    assert set(floors) == set(schema.lm22_columns())
    for cell, default in zip(schema.lm22_columns(), DETECTION_FLOOR, strict=True):
        assert config.detection.floor[cell] == default
        assert floors[cell] == pytest.approx(default, rel=0.1), cell


def test_calibration_refuses_unknown_cells_and_bad_shares() -> None:
    config = default_config()
    with pytest.raises(ValueError, match="zero shares"):
        simulator_generate.calibrate_detection_floors(config, {"macrophages": 0.5})
    with pytest.raises(ValueError, match="zero shares"):
        simulator_generate.calibrate_detection_floors(config, {"neutrophils": 1.0})
