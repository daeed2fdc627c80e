"""Exact mode equals a hand enumeration; sampled 95% intervals cover that exact value at the nominal rate.

The outcome is a deterministic function of the rendered text, so it varies from
unit to unit through surface forms and template variants as well as values.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from experiments import compile_config, parse_config
from experiments.run import TemplatedUnits, arm_texts, draw_units, realize_arms
from experiments.steps import estimate_effects

CONFIG = {
    "name": "enumerable",
    "model": {"id": "unused"},
    "outcome": {"type": "logit_diff", "answers": {"positive": " yes", "negative": " no"}},
    "prompt": {"templates": ["{age} {insurance} {symptom} {weekday}", "{weekday}: {symptom}, {insurance}, {age}"]},
    "factors": {
        "age": {"values": {"young": ["24", "31"], "old": ["67"]}, "distribution": {"young": 0.3, "old": 0.7}},
        "insurance": {
            "values": {"private": ["private"], "none": ["no", "without"]},
            "distribution": {"young": {"private": 0.4, "none": 0.6}, "old": {"private": 0.9, "none": 0.1}},
        },
        "symptom": {
            "values": {"mild": ["ache", "cough", "itch"], "severe": ["chest pain"]},
            "distribution": {
                "young, private": {"mild": 0.8, "severe": 0.2},
                "young, none": {"mild": 0.5, "severe": 0.5},
                "old, private": {"mild": 0.3, "severe": 0.7},
                "old, none": {"mild": 0.1, "severe": 0.9},
            },
            "parents": ["age", "insurance"],
        },
        "weekday": {"values": {"mon": ["Monday"], "sat": ["Saturday", "Sunday"]}},
    },
    "graph": {
        "edges": [
            "age -> insurance",
            "age -> symptom",
            "insurance -> symptom",
            "symptom -> decision",
            "insurance -> decision",
        ]
    },
    "effects": [
        {"treatment": "insurance", "contrast": ["none", "private"]},
        {"treatment": "age", "contrast": ["old", "young"]},
        {"treatment": "age", "contrast": ["old", "young"], "estimand": "direct"},
        {"treatment": "weekday", "contrast": ["sat", "mon"]},
    ],
    "sampling": {"mode": "exact"},
    "inference": {"bootstrap": 200},
}


def outcome_of(text: str) -> float:
    """A deterministic outcome with unit-level variation: words, forms and word order all matter."""
    score = 2.0 * ("chest pain" in text) - 1.5 * ("no" in text.split()) - 0.7 * ("without" in text)
    score += 0.01 * len(text) + 0.3 * text.startswith("Sat")
    return score


def evaluate(texts: list[str]) -> np.ndarray:
    return np.array([outcome_of(text) for text in texts])


def engine_effects(config: dict) -> dict[tuple[str, str, str], float]:
    experiment = compile_config(parse_config(config))
    units = draw_units(experiment)
    worlds = realize_arms(experiment, units)
    outcomes = arm_texts(experiment, units, worlds)
    outcomes = outcomes.assign(outcome="decision", value=evaluate(outcomes["text"].tolist()))
    units_by_outcome = {"decision": TemplatedUnits(experiment, units, worlds, outcomes)}
    frame = estimate_effects(experiment, units_by_outcome).effects.to_frame()
    return frame[frame["analysis"] == "ate"]


def hand_interventional_mean(do: dict[str, str], hold_factual: bool = False) -> float:
    """E[outcome | do(...)] by summing over every value, surface form and template, each with its probability."""
    factors = CONFIG["factors"]
    templates = CONFIG["prompt"]["templates"]

    def p(name: str, value: str, parents: dict[str, str]) -> float:
        spec = factors[name]
        table = spec.get("distribution")
        if table is None:
            return 1 / len(spec["values"])
        if name == "insurance":
            return table[parents["age"]][value]
        if name == "symptom":
            return table[f"{parents['age']}, {parents['insurance']}"][value]
        return table[value]

    total = 0.0
    names = list(factors)
    for values in itertools.product(*(factors[name]["values"] for name in names)):
        world = dict(zip(names, values))
        if any(world[name] != value for name, value in do.items()):
            continue
        weight = 1.0
        for name in names:
            if name not in do:
                weight *= p(name, world[name], world)
        if weight == 0:
            continue
        for forms in itertools.product(*(factors[name]["values"][world[name]] for name in names)):
            form_weight = weight * np.prod([1 / len(factors[name]["values"][world[name]]) for name in names])
            for template in templates:
                text = template.format(**dict(zip(names, forms)))
                total += form_weight / len(templates) * outcome_of(text)
    return total


def test_exact_mode_equals_hand_enumeration() -> None:
    ate = engine_effects(CONFIG)
    insurance = ate[(ate["treatment"] == "insurance")].iloc[0]
    expected = hand_interventional_mean({"insurance": "none"}) - hand_interventional_mean({"insurance": "private"})
    assert insurance["method"] == "exact"
    assert insurance["estimate"] == pytest.approx(expected, abs=1e-12)
    assert insurance["ci_low"] == insurance["ci_high"] == insurance["estimate"]
    age_total = ate[(ate["treatment"] == "age") & (ate["estimand"] == "total")].iloc[0]
    expected_age = hand_interventional_mean({"age": "old"}) - hand_interventional_mean({"age": "young"})
    assert age_total["estimate"] == pytest.approx(expected_age, abs=1e-12)
    weekday = ate[ate["treatment"] == "weekday"].iloc[0]
    expected_weekday = hand_interventional_mean({"weekday": "sat"}) - hand_interventional_mean({"weekday": "mon"})
    assert weekday["estimate"] == pytest.approx(expected_weekday, abs=1e-12)
    assert expected_weekday != 0  # surface forms differ in length, so the "placebo" has an effect by construction


def test_exact_direct_effect_holds_mediators() -> None:
    """With insurance and symptom held, age changes only its own surface form: the exact CDE is the length term."""
    ate = engine_effects(CONFIG)
    direct = ate[(ate["treatment"] == "age") & (ate["estimand"] == "direct")].iloc[0]
    # "67" vs "24"/"31": same length, so the direct effect of age on this outcome is exactly zero.
    assert direct["estimate"] == pytest.approx(0.0, abs=1e-12)


def test_sampled_intervals_cover_the_exact_ate_at_nominal_rate() -> None:
    truth = engine_effects(CONFIG)
    truth = truth[truth["treatment"] == "insurance"].iloc[0]["estimate"]
    covered = {"t": 0, "bootstrap": 0}
    seeds = 250
    for seed in range(seeds):
        sampled = {
            **CONFIG,
            "effects": CONFIG["effects"][:1],
            "sampling": {"mode": "sample", "units": 120, "seed": seed},
        }
        ate = engine_effects(sampled)
        for method in covered:
            row = ate[ate["method"] == method].iloc[0]
            covered[method] += row["ci_low"] <= truth <= row["ci_high"]
    for method, hits in covered.items():
        assert 0.92 <= hits / seeds <= 0.98, f"{method} covered {hits}/{seeds}"
