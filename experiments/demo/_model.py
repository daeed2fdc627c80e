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
The chat model `builtin:decisions-chat` (`_chat_model`) is trained and shipped the same way, with
the helpers here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from experiments.config import (
    BUILTIN_PREFIX,
    Experiment,
    load_experiment,
    load_yaml,
    parse_config,
)
from interventions import render_world

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable  # Python 3.11+; annotations only

DEMO_NAME = "triage-demo"
FAIR_NAME = "triage-demo-fair"
CHAT_NAME = "decisions-chat"
EXAMPLE_CONFIG = files("experiments") / "examples" / "triage.yaml"

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
    """A rule's log-odds of a yes (a referral) for each unit from its factor values (the planted rule by default)."""
    log_odds = np.full(len(next(iter(values.values()))), rule["intercept"])
    for key, weight in rule.items():
        if key != "intercept":
            factor, value = key.split("=")
            log_odds += weight * (values[factor] == value)
    return log_odds


def training_key(rule: Mapping[str, float], *, spec: Any = TRAINING, example: Traversable = EXAMPLE_CONFIG) -> str:
    """Hash of what determines the weights: the spec, the rule, and the example's factors and prompt.

    training.json records it, so shipped weights that no longer match the example config show as stale.
    """
    config = parse_config(load_yaml(Path(str(example))))
    # A chat prompt has no plain variants: its messages and assistant prefix make the notes.
    prompt = config.prompt.variants or config.prompt.model_dump(mode="json", exclude_none=True)
    notes = {"factors": config.model_dump(mode="json")["factors"], "prompt": prompt}
    payload = json.dumps({"spec": asdict(spec), "rule": dict(rule), "notes": notes}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def train_demo_model(name: str, folder: Path, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train the built-in triage model `name` into `folder` (created) and return its training record."""
    rule = RULES[name]
    return deterministic_training(
        name, folder, rule=rule, spec=TRAINING, example=EXAMPLE_CONFIG, train=lambda: _train(folder, rule, progress)
    )


def deterministic_training(
    name: str,
    folder: Path,
    *,
    rule: Mapping[str, float],
    spec: Any,
    example: Traversable,
    train: Callable[[], dict[str, float]],
) -> dict[str, Any]:
    """Run `train` (which saves a model into `folder` and returns its held-out fit) and write its training record.

    Training runs on one CPU thread with deterministic algorithms (the caller's settings are
    restored afterwards), so the weights are bit-identical whatever the process's thread count.
    The record, also written to training.json, holds the spec, the rule, the training key, the
    held-out fit and the model fingerprint as a run's manifest records it.
    """
    import tokenizers
    import torch
    import transformers

    from interventions import ModelAdapter, ModelSpec

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        fit = train()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    record = {
        "model": BUILTIN_PREFIX + name,
        "spec": asdict(spec),
        "planted_log_odds": dict(rule),
        "training_key": training_key(rule, spec=spec, example=example),
        "model_fingerprint": ModelAdapter.load(ModelSpec(str(folder), device="cpu")).fingerprint(),
        **fit,
        "trained_with": {package.__name__: package.__version__ for package in (torch, transformers, tokenizers)},
    }
    (folder / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def draw_notes(
    experiment: Experiment, n_units: int, seed: int, rule: Mapping[str, float]
) -> tuple[list[str], np.ndarray]:
    """Factual prompts drawn from an example's structural model, with the rule's probability of a yes."""
    world = experiment.model.realize(experiment.model.sample_units(n_units, seed=seed))
    texts = [rendered.text for rendered in render_world(experiment.templates, world)]
    return texts, 1.0 / (1.0 + np.exp(-referral_log_odds(world.values, rule)))


def bpe_tokenizer(
    corpus: list[str],
    *,
    vocab_size: int,
    specials: Sequence[str],
    answers: Sequence[str],
    **roles: Any,
):
    """A byte-level BPE tokenizer trained on `corpus`, with `specials` as added tokens and each answer one token.

    `roles` name the special tokens' roles (bos_token, eos_token, pad_token, extra_special_tokens).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **roles)
    tokenizer.padding_side = "right"
    for answer in answers:
        if len(tokenizer.encode(answer)) != 1:
            raise RuntimeError(f"demo tokenizer split the answer {answer!r}; raise the spec's vocab_size")
    return tokenizer


def _train(folder: Path, rule: Mapping[str, float], progress: Callable[[int, int], None] | None) -> dict[str, float]:
    """Train on the rule's notes, save weights and tokenizer into `folder`, and return the held-out fit."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    experiment = load_experiment(Path(str(EXAMPLE_CONFIG)))
    texts, probability = draw_notes(experiment, TRAINING.units, TRAINING.seed, rule)
    end = "<|endoftext|>"
    tokenizer = bpe_tokenizer(
        [f"{text} yes" for text in texts] + [f"{text} no" for text in texts],
        vocab_size=TRAINING.vocab_size,
        specials=[end],
        answers=[" yes", " no"],
        bos_token=end,
        eos_token=end,
        pad_token=end,
    )
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
    rows = torch.arange(TRAINING.batch_size)

    def loss(logits, batch):
        log_probs = torch.log_softmax(logits[rows, last[batch]], dim=-1)
        return -(target[batch] * log_probs[:, yes] + (1 - target[batch]) * log_probs[:, no]).mean()

    fit_model(model, encoded, loss, TRAINING, progress)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    texts, probability = draw_notes(experiment, 2_000, TRAINING.seed + 1, rule)
    return held_out_fit(model, tokenizer, texts, probability, [yes, no])


def fit_model(model, encoded, loss: Callable, spec: Any, progress: Callable[[int, int], None] | None) -> None:
    """Train `model` by AdamW with a one-cycle schedule on seeded random batches of the encoded notes.

    `loss(logits, batch)` reads the batch's logits (batch, position, vocab) against the targets of
    the notes numbered `batch`; `spec` gives the seed, steps, batch size and learning rate.
    """
    import torch

    generator = torch.Generator().manual_seed(spec.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=spec.learning_rate, total_steps=spec.steps)
    model.train()
    for step in range(spec.steps):
        batch = torch.randint(0, len(encoded["input_ids"]), (spec.batch_size,), generator=generator)
        logits = model(input_ids=encoded["input_ids"][batch], attention_mask=encoded["attention_mask"][batch]).logits
        value = loss(logits, batch)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, spec.steps)
    model.eval()


def held_out_fit(
    model, tokenizer, texts: list[str], probability: np.ndarray, answers: Sequence[int]
) -> dict[str, float]:
    """How closely the trained logit difference of answers[0] over answers[1] tracks the rule's log-odds.

    `texts` are fresh prompts, `probability` the rule's probability of answers[0] on each; the
    answer mass is the mean probability of all `answers` after a prompt.
    """
    import torch

    rule = np.log(probability / (1 - probability))
    yes, no = answers[0], answers[1]
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
        "answer_mass": float(torch.softmax(final, dim=-1)[:, list(answers)].sum(dim=1).mean()),
    }
