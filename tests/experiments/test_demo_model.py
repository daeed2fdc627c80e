"""The built-in demo model: its planted mechanisms, its determinism, and token spans under its tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from experiments import load_experiment
from experiments.demo._model import PLANTED_LOG_ODDS, referral_log_odds, resolve_model_path
from experiments.run import draw_units, realize_arms
from interventions import ModelAdapter, ModelSpec, integrated_gradients, render_world

pytestmark = pytest.mark.slow


def test_rule_plants_the_documented_mechanisms() -> None:
    values = {
        "symptom": np.array(["mild", "severe", "mild", "mild"]),
        "insurance": np.array(["private", "private", "none", "public"]),
    }
    assert referral_log_odds(values).tolist() == [-0.5, 1.5, -2.0, -1.0]
    assert set(PLANTED_LOG_ODDS) == {"intercept", "symptom=severe", "insurance=none", "insurance=public"}


def test_demo_model_learned_the_rule(demo_model_path: Path) -> None:
    record = json.loads((demo_model_path / "training.json").read_text())
    assert record["held_out_correlation"] > 0.99
    assert record["held_out_mean_abs_error_log_odds"] < 0.05
    assert record["answer_mass"] > 0.95


def test_cached_model_is_reused(demo_cache: Path, demo_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARIBUS_CACHE_DIR", str(demo_cache))
    stamp = (demo_model_path / "training.json").stat().st_mtime_ns
    assert Path(resolve_model_path("builtin:triage-demo")) == demo_model_path
    assert (demo_model_path / "training.json").stat().st_mtime_ns == stamp


def test_unknown_builtin_names_the_field() -> None:
    from experiments import ConfigError

    with pytest.raises(ConfigError, match=r"^model\.id: unknown built-in model 'builtin:nope'"):
        resolve_model_path("builtin:nope")


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


def test_integrated_gradients_is_complete_on_the_demo_model(demo_model_path: Path, example: Path) -> None:
    """Attributions sum to f(x) - f(pad baseline) within 1% with enough steps."""
    adapter = ModelAdapter.load(ModelSpec(str(demo_model_path)))
    experiment = load_experiment(example, overrides={"sampling": {"units": 8}})
    world = experiment.model.realize(draw_units(experiment))
    texts = render_world(experiment.templates, world)
    result = integrated_gradients(adapter, texts, list(experiment.graph.factors), experiment.outcome, n_steps=128)
    completeness = result.completeness
    gap = completeness["outcome"] - completeness["baseline_outcome"]
    assert (gap.abs() > 0.1).all()
    assert ((completeness["attribution_sum"] - gap).abs() <= 0.01 * gap.abs()).all()
