"""Malformed configs are rejected with a message that names the YAML path and the bad value."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from experiments import ConfigError, load_experiment
from experiments.config._yaml import load_yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "experiments" / "examples" / "triage.yaml"
BASE = load_yaml(EXAMPLE)


def _set(data: dict, path: str, value: object) -> None:
    keys = path.split(".")
    node = data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


_DELETE = object()

# (edit path, new value, expected YAML path in the message, expected words)
MALFORMED = [
    ("modle", {"id": "x"}, "<config>", "unknown key 'modle'; did you mean 'model'"),
    ("model.devcie", "cpu", "model", "did you mean 'device'"),
    ("model.device", "gpu", "model.device", "'gpu' is not one of auto, cpu, cuda"),
    ("model.dtype", "float8", "model.dtype", "float8"),
    ("model.task", "seq2seq", "model.task", "seq2seq"),
    ("outcome.type", "accuracy", "outcome.type", "accuracy"),
    ("outcome.answers", {"positive": " yes"}, "outcome", "logit_diff needs answers"),
    ("prompt.templates", [], "prompt", "templates is empty"),
    ("prompt.templates.0", "Patient {age with {sex}", "prompt.templates[0]", "brace"),
    (
        "prompt.templates.1",
        "Seen on {weekday}: {agee} {sex} {insurance} {symptom}",
        "prompt.templates[1]",
        "did you mean 'age'",
    ),
    (
        "factors.insurance.distribution.young",
        {"private": 0.6, "public": 0.2, "none": 0.1},
        "factors.insurance.distribution.young",
        "sum to 0.9",
    ),
    (
        "factors.insurance.distribution.young",
        {"private": 0.8, "public": 0.2, "nothing": 0.0},
        "factors.insurance.distribution.young",
        "nothing",
    ),
    ("factors.insurance.distribution.old", _DELETE, "factors.insurance.distribution", "old"),
    ("factors.age.distribution", {"young": 1.5, "old": -0.5}, "factors.age.distribution", "-0.5"),
    ("factors.sex.values.male", [], "factors.sex.values.male", "surface form"),
    ("factors.insurance.parents", ["sex"], "factors.insurance.parents", "differ from the graph's parents"),
    ("graph.edges.0", "age => insurance", "graph.edges[0]", "age => insurance"),
    ("graph.edges.1", "age -> symtom", "graph.edges[1]", "did you mean 'symptom'"),
    ("graph.edges.2", "symptom -> symptom", "graph.edges[2]", "self-loop"),
    ("graph.edges.4", "symptom -> age", "graph", "cycle"),
    ("graph.edges", ["age -> insurance", "age -> symptom"], "graph", "decision"),
    ("effects.0.treatment", "insurence", "effects[0].treatment", "did you mean 'insurance'"),
    ("effects.0.contrast", ["none", "gold"], "effects[0].contrast", "'gold' is not a value of insurance"),
    ("effects.0.contrast", ["none", "none"], "effects[0].contrast", "two different values"),
    ("effects.0.moderators", ["insurance"], "effects[0].moderators", "other than the treatment"),
    ("effects.4.estimand", "direct", "effects[4].estimand", "no mediators"),
    ("effects.3.hold", ["weekday"], "effects[3].hold", "not a descendant of age"),
    ("sampling.units", 1, "sampling.units", "greater than or equal to 2"),
    ("sampling.mode", "bayesian", "sampling.mode", "bayesian"),
    ("inference.level", 1.5, "inference.level", "less than 1"),
    ("inference.correction", "bonferroni", "inference.correction", "bonferroni"),
    ("name", "my run/../etc", "name", "names the run folder"),
    ("mediation.0.treatment", "insurence", "mediation[0].treatment", "did you mean 'insurance'"),
    ("mediation.0.contrast", ["none", "gold"], "mediation[0].contrast", "'gold' is not a value of insurance"),
    ("mediation.0.components", ["resid_mid"], "mediation[0].components[0]", "resid_mid"),
    ("mediation.0.positions", ["factor:agee"], "mediation[0].positions", "did you mean 'age'"),
    ("mediation.0.positions", ["middle"], "mediation[0].positions", "'middle' is not one of factor, last, all"),
    ("mediation.0.direction", "sideways", "mediation[0].direction", "sideways"),
    ("evidence.methods", ["attention", "lime"], "evidence.methods[1]", "lime"),
    ("evidence.baseline", "zero", "evidence.baseline", "zero"),
]


@pytest.mark.parametrize(("edit", "value", "path", "words"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_config_names_path_and_value(tmp_path: Path, edit: str, value: object, path: str, words: str) -> None:
    data = copy.deepcopy(BASE)
    _set(data, edit, value)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(words)) as caught:
        load_experiment(config)
    assert str(caught.value).startswith(path)


def test_duplicate_yaml_key_is_rejected(tmp_path: Path) -> None:
    config = tmp_path / "dup.yaml"
    config.write_text(EXAMPLE.read_text(encoding="utf-8") + "\nname: again\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"key 'name' appears twice \(line \d+\)"):
        load_experiment(config)


def test_yaml_tags_are_data_not_code(tmp_path: Path) -> None:
    config = tmp_path / "tag.yaml"
    config.write_text("name: !!python/object/apply:os.system ['echo hi']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_experiment(config)


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"config file '{tmp_path / 'nope.yaml'}' does not exist")):
        load_experiment(tmp_path / "nope.yaml")


def test_example_compiles_to_planned_contrasts() -> None:
    experiment = load_experiment(EXAMPLE)
    labels = [(plan.treatment, plan.contrast, plan.estimand, plan.treated.hold) for plan in experiment.contrasts]
    assert labels == [
        ("insurance", "none vs private", "total", ()),
        ("insurance", "public vs private", "total", ()),
        ("age", "old vs young", "total", ()),
        ("age", "old vs young", "direct", ("insurance", "symptom")),
        ("sex", "male vs female", "total", ()),
        ("weekday", "weekend vs weekday", "total", ()),
    ]
    assert experiment.arms[0].label == "factual"
    assert len(experiment.arms) == 1 + 3 + 2 + 2 + 2 + 2
