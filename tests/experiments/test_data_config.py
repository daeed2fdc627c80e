"""Data-mode configs: the data, rewrite and pairs sections and the rules that tie them to factors and effects."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from experiments import ConfigError, compile_config, load_experiment, parse_config

EXAMPLES = Path(__file__).resolve().parents[2] / "experiments" / "examples"

RULES = """\
factor: insurance
values: [private, public, none]
forms:
  - {private: "private insurance", public: "Medicaid insurance", none: "no insurance"}
"""

BASE: dict[str, Any] = {
    "name": "notes",
    "model": {"id": "builtin:triage-demo"},
    "outcome": {"type": "logit_diff", "answers": {"positive": " yes", "negative": " no"}},
    "data": {"path": "notes.csv", "text": "note", "factors": {"insurance": "ins", "age": "band", "sex": "sex"}},
    "rewrite": {"insurance": "rules.yaml", "sex": "builtin:sex"},
    "factors": {
        "age": {"values": ["young", "old"]},
        "sex": {"values": ["female", "male"]},
        "insurance": {"values": ["private", "public", "none"]},
        "symptom": {"values": ["mild", "severe"]},
    },
    "graph": {
        "outcome": "decision",
        "edges": [
            "age -> insurance",
            "age -> symptom",
            "symptom -> decision",
            "insurance -> decision",
            "sex -> decision",
        ],
    },
    "effects": [{"treatment": "insurance", "contrast": ["none", "private"], "moderators": ["age"]}],
}


def _compile(tmp_path: Path, **sections: Any):
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    data = copy.deepcopy(BASE)
    for key, value in sections.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return compile_config(parse_config(data), base_dir=tmp_path)


def test_a_data_config_compiles_with_paths_beside_the_config(tmp_path: Path) -> None:
    experiment = _compile(tmp_path, pairs={"path": "edits.jsonl"})
    assert experiment.model is None and experiment.templates == ()
    assert experiment.data.path == tmp_path / "notes.csv"
    assert experiment.data.pairs == tmp_path / "edits.jsonl"
    assert set(experiment.data.rules) == {"insurance", "sex"}
    assert experiment.data.rules["insurance"].values == ("private", "public", "none")
    assert [plan.contrast for plan in experiment.contrasts] == ["none vs private"]


def test_the_shipped_example_compiles() -> None:
    experiment = load_experiment(EXAMPLES / "casenotes.yaml")
    assert experiment.data.path == EXAMPLES / "casenotes" / "notes.csv"
    assert experiment.data.path.exists() and experiment.data.pairs.exists()


@pytest.mark.parametrize(
    ("sections", "path", "message"),
    [
        ({"prompt": {"template": "{age}"}}, "<config>", "prompt is not used with data"),
        (
            {"data": None, "prompt": {"template": "{age} {sex} {insurance} {symptom}"}},
            "<config>",
            "rewrite is only used with data",
        ),
        (
            {"data": {**BASE["data"], "path": "notes.xlsx"}},
            "data.path",
            r"must end in one of \.parquet, \.csv, \.jsonl",
        ),
        (
            {"data": {**BASE["data"], "factors": {"insurence": "ins", "age": "band", "sex": "sex"}}},
            "data.factors.insurence",
            "did you mean 'insurance'",
        ),
        ({"data": {**BASE["data"], "on_bad_rows": "skip"}}, "data.on_bad_rows", "Input should be 'drop' or 'error'"),
        (
            {"rewrite": {"insurance": "rules.yaml", "symptom": "rules.yaml"}},
            "rewrite.symptom",
            "'symptom' is not an annotated factor",
        ),
        (
            {"rewrite": {"sex": "builtin:sex"}, "effects": [{"treatment": "insurance", "sources": ["rewrite"]}]},
            "effects[0].sources",
            "source rewrite: insurance has no rewrite rules",
        ),
        (
            {"rewrite": {"sex": "builtin:sex"}},
            "effects[0].moderators",
            "this effect has no rewrite source; add rewrite.insurance rules",
        ),
        (
            {"effects": [{"treatment": "insurance", "sources": ["human_pairs"]}]},
            "effects[0].sources",
            "source human_pairs: no pairs file is given",
        ),
        (
            {"effects": [{"treatment": "insurance", "sources": ["rewrite", "rewrite"]}]},
            "effects[0].sources",
            "sources must be distinct",
        ),
        (
            {
                "data": None,
                "rewrite": {},
                "prompt": {"template": "{age} {sex} {insurance} {symptom}"},
                "effects": [{"treatment": "insurance", "directions": True}],
            },
            "<config>",
            r"effects\[0\].directions is only used with data",
        ),
        (
            {
                "data": None,
                "rewrite": {},
                "prompt": {"template": "{age} {sex} {insurance} {symptom}"},
                "observational": {"propensity": "logistic_l2"},
            },
            "<config>",
            "observational is only used with data",
        ),
        (
            {"effects": [{"treatment": "symptom", "contrast": ["severe", "mild"]}]},
            "effects[0].treatment",
            "'symptom' is not annotated in the documents",
        ),
        (
            {"effects": [{"treatment": "insurance", "moderators": ["symptom"]}]},
            "effects[0].moderators",
            "'symptom' is not annotated",
        ),
        (
            {"effects": [{"treatment": "insurance", "contrast": ["none", "gold"]}]},
            "effects[0].contrast",
            "'gold' is not a value of insurance",
        ),
        (
            {"factors": {**BASE["factors"], "insurance": {"values": ["private", "public", "none", "gold"]}}},
            "rewrite.insurance",
            r"know the values \['private', 'public', 'none'\], not \['gold'\]",
        ),
        (
            {
                "factors": {
                    **BASE["factors"],
                    "age": {"values": ["young", "old"], "distribution": {"young": 0.5, "old": 0.5}},
                }
            },
            "factors.age.distribution",
            "the documents carry the values",
        ),
        (
            {"factors": {**BASE["factors"], "age": {"values": ["young", "young"]}}},
            "factors.age.values",
            r"values \['young'\] are listed more than once",
        ),
        ({"sampling": {"mode": "exact"}}, "sampling.mode", "the documents are the units"),
        (
            {"mediation": [{"treatment": "insurance", "contrast": ["none", "private"], "positions": ["factor:age"]}]},
            "mediation[0].positions",
            "a rewrite records spans of the treatment only",
        ),
        (
            {"mediation": [{"treatment": "insurance", "contrast": ["none", "private"], "method": "attribution"}]},
            "mediation[0].method",
            "patching sweeps run exactly",
        ),
    ],
)
def test_data_mode_rules_name_the_yaml_path(tmp_path: Path, sections: dict, path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _compile(tmp_path, **sections)
    assert caught.value.path == path


def test_a_rewrite_of_a_treatment_with_mediators_is_its_direct_effect(tmp_path: Path) -> None:
    age_rules = 'factor: age\nvalues: [young, old]\nforms:\n  - {young: "young", old: "old"}\n'
    (tmp_path / "age.yaml").write_text(age_rules, encoding="utf-8")
    rewrite = {**BASE["rewrite"], "age": "age.yaml"}
    with pytest.raises(
        ConfigError,
        match=r"^effects\[0\].estimand: a rewrite changes only age's words, so its "
        r"mediators \['insurance', 'symptom'\] keep their factual values",
    ):
        _compile(tmp_path, rewrite=rewrite, effects=[{"treatment": "age", "contrast": ["old", "young"]}])
    experiment = _compile(
        tmp_path, rewrite=rewrite, effects=[{"treatment": "age", "contrast": ["old", "young"], "estimand": "direct"}]
    )
    assert experiment.contrasts[0].estimand == "direct"
    with pytest.raises(ConfigError, match=r"^effects\[0\].hold: a rewrite holds every mediator"):
        _compile(
            tmp_path,
            rewrite=rewrite,
            effects=[{"treatment": "age", "contrast": ["old", "young"], "estimand": "direct", "hold": ["symptom"]}],
        )


def test_a_templated_config_still_needs_a_prompt_and_surface_forms(tmp_path: Path) -> None:
    templated = {key: value for key, value in BASE.items() if key not in ("data", "rewrite")}
    with pytest.raises(ConfigError, match="prompt is missing: give prompt"):
        parse_config(templated)
    with pytest.raises(ConfigError, match=r"^factors.age.*needs a non-empty list of surface forms"):
        compile_config(parse_config({**templated, "prompt": {"template": "{age} {sex} {insurance} {symptom}"}}))


def test_a_templated_config_dumps_and_hashes_without_the_data_mode_sections() -> None:
    from experiments.run._store import config_hash

    templated = load_experiment(EXAMPLES / "triage.yaml").config
    assert not {"data", "rewrite", "pairs"} & set(templated.model_dump(mode="json"))
    documents = load_experiment(EXAMPLES / "casenotes.yaml").config
    dumped = documents.model_dump(mode="json")
    assert "prompt" not in dumped and parse_config(dumped) == documents
    assert config_hash(parse_config(dumped)) == config_hash(documents)


def test_shared_surface_forms_matter_only_where_forms_are_rendered(tmp_path: Path) -> None:
    """Documents carry their own words, so forms written under a data-mode factor are never rendered; a templated
    config with the same factors renders them, and two values sharing one would make their texts alike."""
    shared = {"female": ["patient"], "male": ["patient"]}
    factors = {**BASE["factors"], "sex": {"values": shared}}
    assert _compile(tmp_path, factors=factors).data is not None
    templated = {key: value for key, value in BASE.items() if key not in ("data", "rewrite")}
    forms = {"age": ["young", "old"], "insurance": ["private", "public", "none"], "symptom": ["mild", "severe"]}
    factors = {name: {"values": {value: [value] for value in values}} for name, values in forms.items()}
    with pytest.raises(ConfigError, match=r"^factors.sex.values: 'female' and 'male' share the surface form 'patient'"):
        compile_config(
            parse_config(
                {
                    **templated,
                    "factors": {**factors, "sex": {"values": shared}},
                    "prompt": {"template": "{age} {sex} {insurance} {symptom}"},
                }
            )
        )
