"""The built-in chat model `builtin:decisions-chat`: its chat template, planted mechanisms, answers and shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from experiments.config import model_folder
from experiments.demo._chat_model import (
    CHAT_TRAINING,
    DECISION_LOG_ODDS,
    DECISIONS_CONFIG,
    TURN_END,
    decisions_experiment,
)
from experiments.demo._model import CHAT_NAME, referral_log_odds, training_key
from interventions import (
    Generation,
    LogitDiff,
    ModelAdapter,
    ModelSpec,
    evaluate_outcomes,
    generate_outcomes,
    render_world,
)

FOLDER = model_folder(CHAT_NAME)
MESSAGES = [
    {"role": "system", "content": "You screen rental applications. Today is Monday."},
    {"role": "user", "content": "Ms. Olson, age 64, has a solid rental history. Offer the lease?"},
]
PROMPT = (
    "<|im_start|>system\nYou screen rental applications. Today is Monday.<|im_end|>\n"
    "<|im_start|>user\nMs. Olson, age 64, has a solid rental history. Offer the lease?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
# (do, versus, factors held at their factual values) for each contrast of the example's effects
CONTRASTS = [
    ({"name_group": "group_b"}, {"name_group": "group_a"}, ()),
    ({"age": "old"}, {"age": "young"}, ()),
    ({"age": "old"}, {"age": "young"}, ("record",)),
    ({"record": "strong"}, {"record": "weak"}, ()),
    ({"gender": "male"}, {"gender": "female"}, ()),
    ({"weekday": "weekend"}, {"weekday": "weekday"}, ()),
]
PLANTED = [-0.6, -0.8 + 2.0 * (0.7 - 0.5), -0.8, 2.0, 0.0, 0.0]  # age's total: its record is strong 0.2 more often


@pytest.fixture(scope="module")
def adapter() -> ModelAdapter:
    return ModelAdapter.load(ModelSpec(str(FOLDER), device="cpu"))


@pytest.fixture(scope="module")
def experiment():
    return decisions_experiment(FOLDER)


def _logit_differences(adapter, experiment, units, do, hold=()) -> tuple[np.ndarray, np.ndarray]:
    """The model's logit difference of " yes" over " no" on each unit's prompt under `do`, and the rule's log-odds."""
    world = experiment.model.realize(units, do=do, hold=hold)
    texts = [rendered.text for rendered in render_world(experiment.templates, world)]
    learned = evaluate_outcomes(adapter, texts, LogitDiff(" yes", " no"), batch_size=256)
    return learned, referral_log_odds(world.values, DECISION_LOG_ODDS)


def test_the_chat_template_renders_chatml_with_its_turn_markers_as_added_tokens(adapter) -> None:
    tokenizer = adapter.tokenizer
    assert tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True) == PROMPT
    whole = MESSAGES + [{"role": "assistant", "content": "Answer: Yes"}]
    assert tokenizer.apply_chat_template(whole, tokenize=False) == f"{PROMPT}Answer: Yes{TURN_END}\n"
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(PROMPT)["input_ids"])
    assert tokens.count("<|im_start|>") == 3 and tokens.count(TURN_END) == 2
    assert {"<|im_start|>", TURN_END} <= set(tokenizer.all_special_tokens)
    for answer in (" yes", " no", " Yes", " No"):
        assert len(tokenizer.encode(answer)) == 1


def test_the_example_chats_are_rendered_by_the_shipped_chat_template(experiment, adapter) -> None:
    forms = {"weekday": "Sunday", "gender": "Mr.", "name_group": "Booker", "age": "27", "record": "a poor"}
    config = experiment.config
    for template, messages in zip(experiment.templates, config.prompt.conversations):
        filled = [{"role": m.role, "content": m.content.format(**forms)} for m in messages]
        rendered = adapter.tokenizer.apply_chat_template(filled, tokenize=False, add_generation_prompt=True)
        assert template.render(forms).text == rendered + config.prompt.assistant_prefix
    assert len(experiment.templates) == 3


def test_shipped_model_learned_its_rule() -> None:
    record = json.loads((FOLDER / "training.json").read_text())
    assert record["planted_log_odds"] == dict(DECISION_LOG_ODDS)
    assert record["held_out_mean_abs_error_log_odds"] < 0.02
    assert record["held_out_correlation"] > 0.999
    assert record["answer_mass"] > 0.99
    assert record["capitalised_share"] == pytest.approx(CHAT_TRAINING.capitalised, abs=0.01)
    assert record["end_of_turn_prob"] > 0.99


def test_shipped_weights_are_the_recorded_and_current_ones(adapter) -> None:
    """training.json names the shipped weights' fingerprint, and its key matches today's spec, rule and example."""
    record = json.loads((FOLDER / "training.json").read_text())
    assert adapter.fingerprint() == record["model_fingerprint"]
    assert record["training_key"] == training_key(DECISION_LOG_ODDS, spec=CHAT_TRAINING, example=DECISIONS_CONFIG)


def test_each_units_effects_are_the_rules(adapter, experiment) -> None:
    """On sampled units, every contrast's per-unit change in the logit difference is the rule's change."""
    units = experiment.model.sample_units(120, seed=7)
    for do, versus, hold in CONTRASTS:
        (treated, rule_treated), (control, rule_control) = (
            _logit_differences(adapter, experiment, units, arm, hold) for arm in (do, versus)
        )
        error = (treated - control) - (rule_treated - rule_control)
        assert np.abs(error).max() < 0.08, (do, hold)  # measured: at most 0.04 over every unit
        assert abs(error.mean()) < 0.02, (do, hold)


def test_greedy_answers_are_a_parsable_word_then_the_end_of_turn(adapter, experiment) -> None:
    units = experiment.model.sample_units(40, seed=3)
    world = experiment.model.realize(units)
    texts = [rendered.text for rendered in render_world(experiment.templates, world)]
    parse = {"yes": r"(?i)\byes\b", "no": r"(?i)\bno\b"}
    result = generate_outcomes(adapter, texts, Generation(4, parse, target="yes"), seed=0, batch_size=16)
    assert result.unparsed.sum() == 0 and result.ambiguous.sum() == 0
    # The rule's log-odds are at least 0.3 from zero, so the greedy answer is the rule's likelier one.
    assert result.values.tolist() == (referral_log_odds(world.values, DECISION_LOG_ODDS) > 0).astype(float).tolist()
    tokenizer = adapter.tokenizer
    with torch.inference_mode():
        ids = adapter.model.generate(**tokenizer(texts[0], return_tensors="pt"), max_new_tokens=4, do_sample=False)
    answer = tokenizer.decode(ids[0, len(tokenizer(texts[0])["input_ids"]) :])
    assert answer in {f"{word}{TURN_END}" for word in (" yes", " no", " Yes", " No")}


@pytest.mark.slow
def test_planted_effects_are_recovered_exactly_on_enumerated_units(adapter, experiment) -> None:
    """Weighted over the enumerated units (exact expectations), each effect on the logit difference is the planted one."""
    units = experiment.model.enumerate_units()
    for (do, versus, hold), planted in zip(CONTRASTS, PLANTED):
        treated, _ = _logit_differences(adapter, experiment, units, do, hold)
        control, _ = _logit_differences(adapter, experiment, units, versus, hold)
        effect = np.average(treated - control, weights=units.weights)
        assert effect == pytest.approx(planted, abs=0.02), (do, hold)  # measured: within 0.008


def test_the_example_declares_the_contrasts_checked_here(experiment) -> None:
    """The example config's effects are the contrasts whose planted values the tests above check."""
    declared = {(effect.treatment, tuple(effect.contrast), effect.estimand) for effect in experiment.config.effects}
    expected = {
        (next(iter(do)), (next(iter(do.values())), next(iter(versus.values()))), "direct" if hold else "total")
        for do, versus, hold in CONTRASTS
    }
    assert declared == expected
