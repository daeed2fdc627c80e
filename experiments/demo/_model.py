"""The built-in demo models, `builtin:triage-demo` and `builtin:triage-demo-fair`, shipped trained in the package.

Stage: demo. May import interventions, experiments.errors and the config stage.

A two-layer GPT-2 with its own byte-level BPE tokenizer, trained on notes drawn
from `examples/triage.yaml`'s own structural model and labelled by a rule with
known mechanisms, so a run on it can be checked against the truth:

- insurance has a planted direct effect: no insurance lowers the referral
  log-odds by 1.5, Medicaid by 0.5, against private insurance;
- age acts only through its mediators: severe symptoms (more likely when old)
  raise the log-odds by 2.0, and insurance (which depends on age);
- sex and weekday are ignored by the rule (weekday is the declared placebo).

The model learns P(" yes") = sigmoid(rule), so its logit difference between
" yes" and " no" approximates the rule's log-odds. `builtin:triage-demo-fair` is the
same model trained on the same notes by the rule without the insurance terms: a second
build to compare against, whose insurance effect is zero by construction.

Both ship in `models/<name>/`, made by `scripts/train_demo_models.py` with `train_demo_model`,
which trains deterministically: a retrain anywhere can be compared with the shipped fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from experiments.config import load_experiment
from experiments.errors import ConfigError
from interventions import render_world

BUILTIN_PREFIX = "builtin:"
DEMO_NAME = "triage-demo"
FAIR_NAME = "triage-demo-fair"
EXAMPLE_CONFIG = files("experiments") / "examples" / "triage.yaml"
MODELS = files("experiments.demo") / "models"

PLANTED_LOG_ODDS: Mapping[str, float] = {
    "intercept": -0.5,
    "symptom=severe": 2.0,
    "insurance=none": -1.5,
    "insurance=public": -0.5,
}
FAIR_LOG_ODDS: Mapping[str, float] = {
    key: value for key, value in PLANTED_LOG_ODDS.items() if not key.startswith("insurance=")
}
RULES: Mapping[str, Mapping[str, float]] = {DEMO_NAME: PLANTED_LOG_ODDS, FAIR_NAME: FAIR_LOG_ODDS}


@dataclass(frozen=True)
class TrainingSpec:
    """Everything that determines the trained weights, with the rule and the example's notes."""

    units: int = 16_000
    seed: int = 20_261_123
    steps: int = 600
    batch_size: int = 64
    learning_rate: float = 3e-3
    vocab_size: int = 400
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    n_positions: int = 128
    version: int = 1


TRAINING = TrainingSpec()


def referral_log_odds(values: Mapping[str, np.ndarray], rule: Mapping[str, float] = PLANTED_LOG_ODDS) -> np.ndarray:
    """A rule's referral log-odds of each unit from its factor values (the planted rule by default)."""
    log_odds = np.full(len(values["symptom"]), rule["intercept"])
    for key, weight in rule.items():
        if key != "intercept":
            factor, value = key.split("=")
            log_odds += weight * (values[factor] == value)
    return log_odds


def model_folder(name: str) -> Path:
    """The packaged folder of the built-in model `name` (weights, tokenizer and training.json)."""
    return Path(str(MODELS / name))


def resolve_model_path(model_id: str) -> str:
    """A local folder for `model_id`: a built-in name gives its packaged folder, other ids pass through.

    The built-in models ship trained, so nothing is trained or downloaded here.
    """
    if not model_id.startswith(BUILTIN_PREFIX):
        return model_id
    name = model_id.removeprefix(BUILTIN_PREFIX)
    if name not in RULES:
        known = ", ".join(BUILTIN_PREFIX + known for known in RULES)
        raise ConfigError(f"unknown built-in model {model_id!r}; built-in models: {known}", path="model.id")
    return str(model_folder(name))


def training_key(rule: Mapping[str, float]) -> str:
    """Hash of what determines the weights: the spec, the rule, and the example's factors and prompt.

    training.json records it, so shipped weights that no longer match the example config show as stale.
    """
    config = load_experiment(Path(str(EXAMPLE_CONFIG))).config
    notes = {"factors": config.model_dump(mode="json")["factors"], "prompt": config.prompt.variants}
    payload = json.dumps({"spec": asdict(TRAINING), "rule": dict(rule), "notes": notes}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def train_demo_model(name: str, folder: Path, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train the built-in model `name` into `folder` (created) and return its training record.

    Training runs on one CPU thread with deterministic algorithms (the caller's settings are
    restored afterwards), so the weights are bit-identical whatever the process's thread count.
    The record, also written to training.json, holds the spec, the rule, the training key, the
    held-out fit and the model fingerprint as a run's manifest records it.
    """
    import tokenizers
    import torch
    import transformers

    from interventions import ModelAdapter, ModelSpec

    rule = RULES[name]
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        fit = _train(folder, rule, progress)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    record = {
        "model": BUILTIN_PREFIX + name,
        "spec": asdict(TRAINING),
        "planted_log_odds": dict(rule),
        "training_key": training_key(rule),
        "model_fingerprint": ModelAdapter.load(ModelSpec(str(folder), device="cpu")).fingerprint(),
        **fit,
        "trained_with": {package.__name__: package.__version__ for package in (torch, transformers, tokenizers)},
    }
    (folder / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _notes(n_units: int, seed: int, rule: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    """Factual notes drawn from the example's structural model, with the rule's referral probability."""
    experiment = load_experiment(Path(str(EXAMPLE_CONFIG)))
    world = experiment.model.realize(experiment.model.sample_units(n_units, seed=seed))
    texts = [rendered.text for rendered in render_world(experiment.templates, world)]
    return texts, 1.0 / (1.0 + np.exp(-referral_log_odds(world.values, rule)))


def _tokenizer(texts: list[str]):
    """A byte-level BPE tokenizer trained on the notes, with " yes" and " no" as single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=TRAINING.vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([f"{text} yes" for text in texts] + [f"{text} no" for text in texts], trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    tokenizer.padding_side = "right"
    for answer in (" yes", " no"):
        if len(tokenizer.encode(answer)) != 1:
            raise RuntimeError(f"demo tokenizer split the answer {answer!r}; raise TrainingSpec.vocab_size")
    return tokenizer


def _train(folder: Path, rule: Mapping[str, float], progress: Callable[[int, int], None] | None) -> dict[str, float]:
    """Train on the rule's notes, save weights and tokenizer into `folder`, and return the held-out fit."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    texts, probability = _notes(TRAINING.units, TRAINING.seed, rule)
    tokenizer = _tokenizer(texts)
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    last = encoded["attention_mask"].sum(dim=1) - 1
    target = torch.tensor(probability, dtype=torch.float32)
    yes, no = tokenizer.encode(" yes")[0], tokenizer.encode(" no")[0]
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=TRAINING.n_positions,
        n_embd=TRAINING.n_embd,
        n_layer=TRAINING.n_layer,
        n_head=TRAINING.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if encoded["input_ids"].shape[1] > TRAINING.n_positions:
        raise RuntimeError("demo notes exceed the model's positions; raise TrainingSpec.n_positions")
    with torch.random.fork_rng():
        torch.manual_seed(TRAINING.seed)
        model = GPT2LMHeadModel(config)
    generator = torch.Generator().manual_seed(TRAINING.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=TRAINING.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=TRAINING.learning_rate, total_steps=TRAINING.steps)
    model.train()
    rows = torch.arange(TRAINING.batch_size)
    for step in range(TRAINING.steps):
        batch = torch.randint(0, len(texts), (TRAINING.batch_size,), generator=generator)
        logits = model(input_ids=encoded["input_ids"][batch], attention_mask=encoded["attention_mask"][batch]).logits[
            rows, last[batch]
        ]
        log_probs = torch.log_softmax(logits, dim=-1)
        loss = -(target[batch] * log_probs[:, yes] + (1 - target[batch]) * log_probs[:, no]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, TRAINING.steps)
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return _held_out_fit(model, tokenizer, yes, no, rule)


def _held_out_fit(model, tokenizer, yes: int, no: int, rule: Mapping[str, float]) -> dict[str, float]:
    """How closely the trained logit difference tracks the rule's log-odds on fresh notes."""
    import torch

    texts, probability = _notes(2_000, TRAINING.seed + 1, rule)
    rule = np.log(probability / (1 - probability))
    with torch.inference_mode():
        encoded = tokenizer(texts, padding=True, return_tensors="pt")
        logits = model(**encoded).logits
        last = encoded["attention_mask"].sum(dim=1) - 1
        final = logits[torch.arange(len(texts)), last]
        learned = (final[:, yes] - final[:, no]).double().numpy()
    return {
        "held_out_units": len(texts),
        "held_out_mean_abs_error_log_odds": float(np.mean(np.abs(learned - rule))),
        "held_out_correlation": float(np.corrcoef(learned, rule)[0, 1]),
        "answer_mass": float(torch.softmax(final, dim=-1)[:, [yes, no]].sum(dim=1).mean()),
    }
