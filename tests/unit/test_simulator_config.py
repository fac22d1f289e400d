"""The simulator's typed configuration: defaults, provenance, TOML overrides, vocabulary checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from metapredict import schema
from metapredict.simulator import SimulatorConfig, default_config, load_config
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
            for cancer_type in e.cancer_types or schema.CANCER_TYPES:
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
