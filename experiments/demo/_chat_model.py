"""The built-in chat model `builtin:decisions-chat`, shipped trained in the package.

Stage: demo. May import interventions, experiments.errors and the config stage.

A two-layer Llama with its own byte-level BPE tokenizer and a ChatML chat template, trained
on chats drawn from `examples/decisions.yaml`'s own structural model, rendered by that very
template and answered by a rule with known mechanisms, so an audit run on it can be checked
against the truth:

- a strong record raises the log-odds of a yes by 2.0;
- age has a planted direct effect (old: -0.8) and acts through the record too, which is
  more often strong when old;
- the surname group has a planted direct effect (group_b: -0.6), implied by surnames alone;
- gender and the weekday are ignored (the weekday is the declared placebo).

Each chat's answer is "Answer:" then " yes" with the rule's probability, else " no", written
" Yes" or " No" in a fifth of the chats, then the end of the turn. The model learns that
distribution, so its logit difference of " yes" over " no" approximates the rule's log-odds
(the casing share is the same for both), P(" yes") + P(" Yes") the rule's probability, and
a greedy answer is one word and the end of the turn.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from experiments.config import Experiment, compile_config, load_yaml, parse_config
from experiments.demo._model import (
    CHAT_NAME,
    bpe_tokenizer,
    deterministic_training,
    draw_notes,
    fit_model,
    held_out_fit,
)

DECISIONS_CONFIG = files("experiments") / "examples" / "decisions.yaml"
DECISION_LOG_ODDS: Mapping[str, float] = {
    "intercept": -0.9,
    "record=strong": 2.0,
    "age=old": -0.8,
    "name_group=group_b": -0.6,
}
END_OF_TEXT, TURN_START, TURN_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ANSWERS = (" yes", " no", " Yes", " No")  # the logit difference reads the first two
_SPECIALS = re.compile("|".join(re.escape(token) for token in (END_OF_TEXT, TURN_START, TURN_END)))


@dataclass(frozen=True)
class ChatTrainingSpec:
    """Everything that determines the trained weights, with the rule and the example's chats."""

    units: int = 16_000
    seed: int = 20_261_201
    steps: int = 800
    batch_size: int = 64
    learning_rate: float = 3e-3
    vocab_size: int = 600
    num_hidden_layers: int = 2
    hidden_size: int = 64
    intermediate_size: int = 128
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 128
    capitalised: float = 0.2
    chat_template: str = CHAT_TEMPLATE
    version: int = 1


CHAT_TRAINING = ChatTrainingSpec()


def decisions_experiment(folder: Path) -> Experiment:
    """The example's experiment on the model in `folder`, whose tokenizer's chat template renders the chats."""
    config = parse_config(load_yaml(Path(str(DECISIONS_CONFIG))))
    model = config.model.model_copy(update={"id": str(folder)})
    return compile_config(config.model_copy(update={"model": model}))


def train_chat_model(folder: Path, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train `builtin:decisions-chat` into `folder` (created) and return its training record.

    Besides the shared fit (logit difference of " yes" over " no" against the rule's log-odds),
    the record holds the share of answers capitalised and the probability of ending the turn.
    """
    return deterministic_training(
        CHAT_NAME,
        folder,
        rule=DECISION_LOG_ODDS,
        spec=CHAT_TRAINING,
        example=DECISIONS_CONFIG,
        train=lambda: _train(folder, progress),
    )


def _chat_tokenizer(corpus: list[str], *, answers: Sequence[str] = ANSWERS):
    """The shared BPE tokenizer on `corpus`, with the turn markers as added tokens and the chat template."""
    tokenizer = bpe_tokenizer(
        corpus,
        vocab_size=CHAT_TRAINING.vocab_size,
        specials=[END_OF_TEXT, TURN_START, TURN_END],
        answers=answers,
        eos_token=TURN_END,
        pad_token=END_OF_TEXT,
        extra_special_tokens=[TURN_START],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _chats(n_units: int, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    """Prompts drawn from the example and rendered by the chat template, their answers, and P(yes) by the rule.

    The template writes the same text whatever the vocabulary, so an untrained tokenizer renders them.
    """
    with tempfile.TemporaryDirectory(prefix="paribus-chat-") as scratch:
        _chat_tokenizer([], answers=()).save_pretrained(scratch)
        experiment = decisions_experiment(Path(scratch))
    prompts, probability = draw_notes(experiment, n_units, seed, DECISION_LOG_ODDS)
    draws = np.random.default_rng([seed, 1]).random((n_units, 2))  # a stream apart from the units' noise
    answers = [
        ANSWERS[2 * bool(capital) + (not yes)]
        for yes, capital in zip(draws[:, 0] < probability, draws[:, 1] < CHAT_TRAINING.capitalised)
    ]
    return prompts, answers, probability


def _encode(tokenizer, prompts: list[str], answers: list[str]):
    """Each whole chat (prompt, answer, end of turn) encoded, and the position of its prompt's last token."""
    import torch

    encoded = tokenizer([f"{p}{a}{TURN_END}\n" for p, a in zip(prompts, answers)], padding=True, return_tensors="pt")
    last = torch.tensor([len(ids) - 1 for ids in tokenizer(prompts)["input_ids"]])
    rows = torch.arange(len(prompts))
    answer_ids = torch.tensor([tokenizer.encode(a)[0] for a in answers])
    end = tokenizer.convert_tokens_to_ids(TURN_END)
    ids = encoded["input_ids"]
    if not ((ids[rows, last + 1] == answer_ids).all() and (ids[rows, last + 2] == end).all()):
        raise RuntimeError("the chat tokenizer merges a prompt's last token with its answer; change the prefix")
    return encoded, last


def _train(folder: Path, progress: Callable[[int, int], None] | None) -> dict[str, float]:
    """Train on the rule's chats, save weights and tokenizer into `folder`, and return the held-out fit."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = CHAT_TRAINING
    prompts, answers, probability = _chats(spec.units, spec.seed)
    tokenizer = _chat_tokenizer([piece for p, a in zip(prompts, answers) for piece in _SPECIALS.split(p + a)])
    encoded, last = _encode(tokenizer, prompts, answers)
    if encoded["input_ids"].shape[1] > spec.max_position_embeddings:
        raise RuntimeError("the chats exceed the model's positions; raise ChatTrainingSpec.max_position_embeddings")
    answer_ids = [tokenizer.encode(answer)[0] for answer in ANSWERS]
    end = tokenizer.convert_tokens_to_ids(TURN_END)
    yes, casing = torch.tensor(probability), spec.capitalised
    # The soft target of every chat's answer: the distribution its sampled answer was drawn from.
    target = torch.stack([(1 - casing) * yes, (1 - casing) * (1 - yes), casing * yes, casing * (1 - yes)], 1).float()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=None,
        eos_token_id=end,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        model = LlamaForCausalLM(config)
    rows = torch.arange(spec.batch_size)

    def loss(logits, batch):
        at = last[batch]
        answer = torch.log_softmax(logits[rows, at], dim=-1)[:, answer_ids]
        turn_end = torch.log_softmax(logits[rows, at + 1], dim=-1)[:, end]
        return -(target[batch] * answer).sum(dim=1).mean() - turn_end.mean()

    fit_model(model, encoded, loss, spec, progress)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    prompts, answers, probability = _chats(1_000, spec.seed + 1)
    return {
        **held_out_fit(model, tokenizer, prompts, probability, answer_ids),
        **_turns(model, tokenizer, prompts, answers),
    }


def _turns(model, tokenizer, prompts: list[str], answers: list[str]) -> dict[str, float]:
    """On whole held-out chats: the share of answer mass capitalised, and P(end of turn) after the answer."""
    import torch

    encoded, last = _encode(tokenizer, prompts, answers)
    rows = torch.arange(len(prompts))
    answer_ids = [tokenizer.encode(answer)[0] for answer in ANSWERS]
    with torch.inference_mode():
        logits = model(**encoded).logits
        answer = torch.softmax(logits[rows, last], dim=-1)[:, answer_ids]
        turn_end = torch.softmax(logits[rows, last + 1], dim=-1)[:, tokenizer.convert_tokens_to_ids(TURN_END)]
    return {
        "capitalised_share": float((answer[:, 2:].sum(dim=1) / answer.sum(dim=1)).mean()),
        "end_of_turn_prob": float(turn_end.mean()),
    }
