"""Malformed configs are rejected with a message that names the YAML path and the bad value."""

from __future__ import annotations

import copy
import re
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from experiments import ConfigError, compile_config, load_experiment, parse_config
from experiments.config._resources import BYTES_PER_TEXT, check_resources, physical_memory, size_words
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
    ("outcome", {"type": "choice_prob", "options": {"yes": [" yes"]}}, "outcome", "choice_prob needs at least two"),
    (
        "outcome",
        {"type": "choice_prob", "options": {"yes": [" yes"], "no": [" no"]}, "target": "maybe"},
        "outcome",
        "choice_prob needs target: one of the options ['no', 'yes']; got 'maybe'",
    ),
    (
        "outcome",
        {"type": "expected_value", "options": {"a": [" 1"], "b": [" 2"]}, "values": {"a": 1, "c": 2}},
        "outcome",
        "expected_value's values must name exactly the options ['a', 'b']; got ['a', 'c']",
    ),
    ("outcome", {"type": "expected_value"}, "outcome", "expected_value needs values"),
    (
        "outcome",
        {"type": "choice_prob", "options": {True: [" yes"], False: [" no"]}, "target": True},
        "outcome",
        'YAML read a bare yes, no, on, off, true or false as a boolean; quote such names, e.g. {"yes"',
    ),
    (
        "outcome",
        {"type": "expected_value", "values": {"1": 1, "2": 2}},
        "outcome.type",
        "expected_value reads a sequence-classifier model, but model.task is causal-lm",
    ),
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
    ("mediation.0.components", ["resid_middle"], "mediation[0].components[0]", "resid_middle"),
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


def test_option_names_yaml_reads_as_numbers_are_their_digits(tmp_path: Path) -> None:
    """`1: [" 1"]` names the option "1" (a rating scale), as written; the values follow the same names."""
    data = copy.deepcopy(BASE)
    data["outcome"] = yaml.safe_load('{type: expected_value, options: {1: [" 1"], 2: [" 2"]}, values: {1: 1, 2: 2}}')
    data["fairness"]["threshold"] = 1.5
    config = tmp_path / "digits.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    outcome = load_experiment(config).outcome
    assert {name: list(strings) for name, strings in outcome.options.items()} == {"1": [" 1"], "2": [" 2"]}
    assert dict(outcome.values) == {"1": 1.0, "2": 2.0}


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


def _write(tmp_path: Path, data: dict, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _alias_bomb() -> str:
    """A factor's values as nine levels of nine aliases each: 9**9 (387 million) strings from about 1.5 KB."""
    anchors = ['  l0: &l0 ["Jamal", "Jamal", "Jamal", "Jamal", "Jamal", "Jamal", "Jamal", "Jamal", "Jamal"]']
    anchors += [f"  l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]" for level in range(1, 9)]
    values = f"      black: [{', '.join(['*l8'] * 9)}]\n      white: [Greg]\n"
    return "name: bomb\nlaughs:\n" + "\n".join(anchors) + "\nfactors:\n  race:\n    values:\n" + values


def test_an_alias_bomb_is_refused_in_well_under_a_second_and_little_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_alias_bomb(), encoding="utf-8")
    assert bomb.stat().st_size < 1_500
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"expands to more than 100,000 nodes") as caught:
        load_experiment(bomb)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert str(caught.value).startswith(f"{bomb}: line ")
    assert len(str(caught.value)) < 300
    assert elapsed < 1.0  # a denial-of-service guard: unguarded, this file took minutes and gigabytes
    assert peak < 100 * 2**20


@pytest.mark.parametrize(
    "text",
    [
        "name: " + "[" * 10_000 + "]" * 10_000,
        "name: " + "{a: " * 10_000 + "1" + "}" * 10_000,
        "name:\n" + "".join(" " * (level + 1) + "-\n" for level in range(2_000)),
    ],
    ids=["flow-lists", "flow-mappings", "block-lists"],
)
def test_deep_nesting_is_a_config_error_not_a_recursion_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(path))}: line \d+: the document nests deeper than 64 levels"
    ):
        load_experiment(path)
    assert time.perf_counter() - started < 1.0


def test_nesting_through_aliases_counts_as_deep(tmp_path: Path) -> None:
    """Each alias adds its anchor's depth, so a few short anchors can nest far deeper than the text shows."""
    anchors = ["a0: &a0 " + "[" * 40 + "]" * 40] + [
        f"a{i}: &a{i} " + "[" * 30 + f"*a{i - 1}" + "]" * 30 for i in (1, 2)
    ]
    path = tmp_path / "deep-aliases.yaml"
    path.write_text("\n".join(anchors) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"nests deeper than 64 levels"):
        load_experiment(path)


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("name: &loop [x, *loop]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 1: an alias names a node that contains it"):
        load_experiment(path)


def test_shared_aliases_within_the_limits_load_as_copies(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text("forms: &forms [a, b]\nvalues: {x: *forms, y: *forms}\n", encoding="utf-8")
    assert load_yaml(path)["values"] == {"x": ["a", "b"], "y": ["a", "b"]}


def test_a_megabyte_value_is_quoted_in_a_few_hundred_characters(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["factors"]["sex"]["values"] = "x" * 2**20
    with pytest.raises(ConfigError) as caught:
        load_experiment(_write(tmp_path, data))
    message = str(caught.value)
    assert message.startswith("factors.sex.values: Input should be a valid dictionary (got 'xxx")
    assert message.endswith("… (1,048,576 characters))")
    assert len(message) < 1_000


def test_a_megabyte_name_is_quoted_short_wherever_it_is_reported(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["effects"][0]["treatment"] = "t" * 2**20
    with pytest.raises(ConfigError, match=r"^effects\[0\]\.treatment: treatment 'ttt") as caught:
        load_experiment(_write(tmp_path, data))
    assert "(1,048,576 characters) is not a factor" in str(caught.value)
    assert len(str(caught.value)) < 1_000


def test_many_problems_are_listed_up_to_twenty_and_counted(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["graph"]["edges"] = list(range(1_000))
    with pytest.raises(ConfigError) as caught:
        load_experiment(_write(tmp_path, data))
    lines = str(caught.value).splitlines()
    assert lines[0] == "graph.edges[0]: Input should be a valid string (got 0)"
    assert lines[19].startswith("graph.edges[19]:")
    assert lines[20:] == ["... and 980 more problems of the same config"]


def test_two_values_sharing_a_surface_form_are_refused_naming_both() -> None:
    data = copy.deepcopy(BASE)
    data["factors"]["sex"]["values"] = {"female": ["woman", "Jamal"], "male": ["Jamal"]}
    with pytest.raises(
        ConfigError,
        match=re.escape("factors.sex.values: 'female' and 'male' share the surface form 'Jamal'; "),
    ):
        compile_config(parse_config(data))


def test_an_outcome_must_suit_the_model_task() -> None:
    data = copy.deepcopy(BASE)
    data["model"]["task"] = "sequence-classifier"
    with pytest.raises(
        ConfigError, match=r"^outcome.type: logit_diff reads a causal-lm model, but model.task is sequence-classifier"
    ):
        compile_config(parse_config(data))


def test_two_equal_answers_are_refused_at_the_outcome() -> None:
    data = copy.deepcopy(BASE)
    data["outcome"]["answers"] = {"positive": " yes", "negative": " yes"}
    with pytest.raises(ConfigError, match=r"^outcome: LogitDiff answers are both ' yes'"):
        compile_config(parse_config(data))


@pytest.mark.parametrize(("edit", "value"), [("inference.level", float("nan")), ("inference.negligible", float("inf"))])
def test_non_finite_numbers_are_refused(edit: str, value: float) -> None:
    data = copy.deepcopy(BASE)
    _set(data, edit, value)
    with pytest.raises(ConfigError, match=rf"^{re.escape(edit)}: Input should be a finite number"):
        parse_config(data)


def test_a_list_of_values_must_hold_names() -> None:
    data = copy.deepcopy(BASE)
    data["factors"]["sex"]["values"] = [["female"], "male"]
    with pytest.raises(
        ConfigError, match=r"^factors.sex.values: a list of values holds value names \(text\); got \['female'\]"
    ):
        parse_config(data)


def test_an_override_of_a_section_that_is_not_a_mapping_reports_the_section(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["sampling"] = [1, 2]
    with pytest.raises(ConfigError, match=r"^sampling: Input should be a valid dictionary"):
        load_experiment(_write(tmp_path, data), overrides={"sampling": {"units": 10}})


def _without_evidence() -> dict:
    return {key: value for key, value in copy.deepcopy(BASE).items() if key != "evidence"}


def test_units_beyond_the_machine_memory_are_refused_naming_the_field() -> None:
    config = parse_config(_without_evidence())
    n_arms = 12
    need = config.sampling.units * n_arms * BYTES_PER_TEXT
    check_resources(config, n_arms=n_arms, memory=need)
    with pytest.raises(
        ConfigError,
        match=re.escape(
            f"sampling.units: {config.sampling.units:,} units in 12 arms need about {size_words(need)} of memory "
            f"(1 KiB per unit and arm), more than this machine's {size_words(need - 1)}; lower sampling.units"
        ),
    ):
        check_resources(config, n_arms=n_arms, memory=need - 1)


def test_the_bound_on_units_follows_the_sampling_mode() -> None:
    exact = parse_config({**_without_evidence(), "sampling": {"mode": "exact", "max_exact_units": 10**9}})
    with pytest.raises(ConfigError, match=r"^sampling.max_exact_units: up to 1,000,000,000 enumerated units"):
        check_resources(exact, n_arms=2, memory=2**40)
    sequential = parse_config({**_without_evidence(), "sampling": {"target_half_width": 0.1, "max_units": 10**9}})
    with pytest.raises(ConfigError, match=r"^sampling.max_units: up to 1,000,000,000 units"):
        check_resources(sequential, n_arms=2, memory=2**40)


def test_bootstrap_resamples_are_sized_by_the_evidence_units_they_resample() -> None:
    config = parse_config(copy.deepcopy(BASE))  # evidence on 120 of 400 units, 5 factors
    need = config.inference.bootstrap * 120 * (2 * 5 + 1) * 8
    check_resources(config, n_arms=1, memory=need)
    with pytest.raises(
        ConfigError,
        match=re.escape(f"inference.bootstrap: 2,000 resamples need about {size_words(need)} of memory "),
    ):
        check_resources(config, n_arms=1, memory=need - 1)
    check_resources(parse_config(_without_evidence()), n_arms=0, memory=2_000 * 8)


def test_sizes_pass_unchecked_where_the_machine_memory_is_unknown() -> None:
    config = parse_config({**copy.deepcopy(BASE), "sampling": {"units": 10**15}})
    check_resources(config, n_arms=12, memory=None)
    with pytest.raises(ConfigError, match=r"^sampling.units: 1,000,000,000,000,000 units in 12 arms"):
        check_resources(config, n_arms=12, memory=physical_memory())


def test_a_config_file_over_ten_megabytes_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("name: " + "x" * (10 * 2**20), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"is 10,485,766 bytes, more than the 10,485,760 a config may be"):
        load_experiment(path)


def test_a_config_path_through_a_file_cannot_be_read(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^config file '{re.escape(str(blocker))}/c.yaml' cannot be read: "):
        load_experiment(blocker / "c.yaml")
