"""The built-in demo models: planted mechanisms, shipped weights, deterministic training, the README's numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import load_experiment
from experiments.config import BUILTIN_NAMES, model_folder, resolve_model_path
from experiments.demo import _chat_model, _model
from experiments.demo._model import PLANTED_LOG_ODDS, RULES, referral_log_odds, train_demo_model, training_key
from experiments.run import draw_units, realize_arms
from interventions import ModelAdapter, ModelSpec, integrated_gradients, render_world
from scripts.readme_demo_tables import main as readme_tables
from scripts.readme_demo_tables import readme_block

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def shipped_fingerprint(name: str) -> str:
    return ModelAdapter.load(ModelSpec(str(model_folder(name)), device="cpu")).fingerprint()


def test_rule_plants_the_documented_mechanisms() -> None:
    values = {
        "symptom": np.array(["mild", "severe", "mild", "mild"]),
        "insurance": np.array(["private", "private", "none", "public"]),
    }
    assert referral_log_odds(values).tolist() == [-0.5, 1.5, -2.0, -1.0]
    assert set(PLANTED_LOG_ODDS) == {"intercept", "symptom=severe", "insurance=none", "insurance=public"}


@pytest.mark.parametrize("name", list(RULES))
def test_shipped_model_learned_its_rule(name: str) -> None:
    record = json.loads((model_folder(name) / "training.json").read_text())
    assert record["planted_log_odds"] == dict(RULES[name])
    assert record["held_out_correlation"] > 0.99
    assert record["held_out_mean_abs_error_log_odds"] < 0.05
    assert record["answer_mass"] > 0.95


@pytest.mark.parametrize("name", list(RULES))
def test_shipped_weights_are_the_recorded_and_current_ones(name: str) -> None:
    """training.json names the shipped weights' fingerprint, and its key matches today's spec, rule and example."""
    record = json.loads((model_folder(name) / "training.json").read_text())
    assert shipped_fingerprint(name) == record["model_fingerprint"]
    assert record["training_key"] == training_key(RULES[name])


def test_builtin_ids_resolve_to_the_packaged_weights_without_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training(*args: object) -> None:
        raise AssertionError("resolving a built-in model must not train it")

    monkeypatch.setattr(_model, "_train", no_training)
    monkeypatch.setattr(_chat_model, "_train", no_training)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for name in BUILTIN_NAMES:
        folder = Path(resolve_model_path(f"builtin:{name}"))
        assert folder == Path(_model.__file__).parent / "models" / name
        assert (folder / "model.safetensors").is_file()
    assert not any(tmp_path.iterdir())
    assert resolve_model_path("some-org/some-model") == "some-org/some-model"


def test_unknown_builtin_names_the_field() -> None:
    from experiments import ConfigError

    with pytest.raises(ConfigError, match=r"^model\.id: unknown built-in model 'builtin:nope'"):
        resolve_model_path("builtin:nope")


def test_readme_names_the_shipped_fingerprint() -> None:
    assert f"`{shipped_fingerprint('triage-demo')}`" in readme_block(README.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_training_is_bit_identical_across_thread_counts_and_equals_the_shipped_weights(tmp_path: Path) -> None:
    """Retrained with the process at 1 and at 2 threads, the demo model has the shipped fingerprint."""
    import torch

    threads = torch.get_num_threads()
    fingerprints = {}
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            record = train_demo_model("triage-demo", tmp_path / str(count))
            assert torch.get_num_threads() == count
            fingerprints[count] = record["model_fingerprint"]
    finally:
        torch.set_num_threads(threads)
    assert fingerprints[1] == fingerprints[2] == shipped_fingerprint("triage-demo")
    shipped = json.loads((model_folder("triage-demo") / "training.json").read_text())
    retrained = json.loads((tmp_path / "2" / "training.json").read_text())
    assert {key: value for key, value in retrained.items() if key != "trained_with"} == {
        key: value for key, value in shipped.items() if key != "trained_with"
    }


@pytest.mark.slow
def test_readme_demo_block_matches_a_fresh_run(
    tmp_path: Path, example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's block is what the script makes of a fresh demo run, and the script catches a stale copy."""
    run = tmp_path / "run"
    paribus = Path(sys.executable).with_name("paribus")
    done = subprocess.run([str(paribus), "run", str(example), "--out", str(run)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert readme_tables([str(run), "--check", str(README)]) == 0
    table = readme_block(README.read_text(encoding="utf-8")).split("\n\n")[0]
    assert f"## Effects\n\n{table}\n" in (run / "summary.md").read_text(encoding="utf-8")

    stale = tmp_path / "README.md"
    stale.write_text(README.read_text(encoding="utf-8").replace("| -1.488 |", "| -1.490 |"), encoding="utf-8")
    capsys.readouterr()
    assert readme_tables([str(run), "--check", str(stale)]) == 1
    diff = capsys.readouterr().out
    assert "-| insurance | do(none) vs do(private) | total | -1.490 |" in diff
    assert "+| insurance | do(none) vs do(private) | total | -1.488 |" in diff


@pytest.mark.slow
def test_every_factor_span_is_exact_under_the_demo_tokenizer(demo_model_path: Path, example: Path) -> None:
    """In every arm, the tokens of a factor's span decode to its surface form, and no other token touches it."""
    tokenizer = ModelAdapter.load(ModelSpec(str(demo_model_path))).tokenizer
    experiment = load_experiment(example, overrides={"sampling": {"units": 40}})
    units = draw_units(experiment)
    checked = 0
    for world in realize_arms(experiment, units).values():
        for rendered in render_world(experiment.templates, world):
            offsets = tokenizer(rendered.text, return_offsets_mapping=True)["offset_mapping"]
            ids = tokenizer(rendered.text)["input_ids"]
            for slot, token_spans in rendered.token_spans(tokenizer).items():
                for (start, end), (char_start, char_end) in zip(token_spans, rendered.spans[slot]):
                    form = rendered.text[char_start:char_end]
                    assert tokenizer.decode(ids[start:end]).strip() == form
                    outside = offsets[:start] + offsets[end:]
                    assert not any(a < char_end and b > char_start and b > a for a, b in outside)
                    checked += 1
    assert checked == 40 * len(experiment.arms) * 5


@pytest.mark.slow
def test_integrated_gradients_is_complete_on_the_demo_model(demo_model_path: Path, example: Path) -> None:
    """Attributions sum to f(x) - f(pad baseline) within 1% with enough steps."""
    adapter = ModelAdapter.load(ModelSpec(str(demo_model_path)))
    experiment = load_experiment(example, overrides={"sampling": {"units": 8}})
    world = experiment.model.realize(draw_units(experiment))
    texts = render_world(experiment.templates, world)
    result = integrated_gradients(adapter, texts, list(experiment.graph.factors), experiment.outcome, n_steps=128)
    completeness = result.completeness
    gap = completeness["outcome"] - completeness["baseline_outcome"]
    # Gaps clear of zero, so the 1% bound is meaningful; where the all-pad baseline lands depends on the weights.
    assert (gap.abs() > 0.05).all()
    assert ((completeness["attribution_sum"] - gap).abs() <= 0.01 * gap.abs()).all()
