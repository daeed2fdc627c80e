"""Outcome specs: what number a model's logits give for one text.

Each spec binds to a loaded model (`_bind`), which checks the task and resolves answer
tokens and labels before any forward pass, and returns a `_Reader`. The specs are plain data:
torch loads only when one binds, so configs compile without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from interventions.errors import AnswerTokenError, InterventionError

if TYPE_CHECKING:
    import torch

    from interventions._adapter import ModelAdapter
    from interventions._spec import Task


@dataclass(frozen=True)
class _Reader:
    """An outcome bound to one model.

    `suffix` holds token ids appended to every text before the forward pass; `read` maps the
    batch logits and each row's last real token index to one value per row.
    """

    suffix: tuple[int, ...]
    read: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LogitDiff:
    """Next-token logit of `positive` minus that of `negative` at the last token.

    Both answers must be single tokens (e.g. " yes" with its leading space).
    """

    positive: str
    negative: str

    def __post_init__(self) -> None:
        if self.positive == self.negative:
            raise InterventionError(
                f"LogitDiff answers are both {self.positive!r}; the difference would always "
                "be 0; give two different answers"
            )

    def _bind(self, adapter: ModelAdapter) -> _Reader:
        _require_task(self, adapter, "causal-lm")
        positive, negative = (_single_token(adapter, answer) for answer in (self.positive, self.negative))

        def read(logits: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
            final = _at_last(logits, last)
            return final[:, positive] - final[:, negative]

        return _Reader(suffix=(), read=read)


@dataclass(frozen=True)
class AnswerProb:
    """Probability of the `target` answer under a softmax over the answers' next-token logits.

    `answers` maps answer names to their single-token strings, e.g. {"yes": " yes", "no": " no"}.
    """

    answers: Mapping[str, str]
    target: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "answers", MappingProxyType(dict(self.answers)))
        if len(self.answers) < 2:
            raise InterventionError(
                f"AnswerProb needs at least two answers, got {dict(self.answers)}; a softmax "
                "over one answer is always 1"
            )
        if self.target not in self.answers:
            raise InterventionError(
                f"AnswerProb target {self.target!r} is not an answer name; answer names are {list(self.answers)}"
            )

    def _bind(self, adapter: ModelAdapter) -> _Reader:
        import torch

        _require_task(self, adapter, "causal-lm")
        token_ids = [_single_token(adapter, answer) for answer in self.answers.values()]
        if len(set(token_ids)) < len(token_ids):
            raise InterventionError(
                f"AnswerProb answers {dict(self.answers)} share a token under this tokenizer; "
                "each answer needs its own token"
            )
        target = list(self.answers).index(self.target)

        def read(logits: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
            return torch.softmax(_at_last(logits, last)[:, token_ids], dim=-1)[:, target]

        return _Reader(suffix=(), read=read)


@dataclass(frozen=True)
class ContinuationLogProb:
    """Sum of log p(continuation tokens | prompt) under a causal LM; any number of tokens.

    The continuation is tokenized on its own and appended to the prompt's tokens, so every
    prompt is scored on the same continuation tokens.
    """

    continuation: str

    def __post_init__(self) -> None:
        if not self.continuation:
            raise InterventionError("ContinuationLogProb continuation is empty; give the text to score, e.g. ' yes'")

    def _bind(self, adapter: ModelAdapter) -> _Reader:
        import torch

        _require_task(self, adapter, "causal-lm")
        token_ids = tuple(_answer_tokens(adapter, self.continuation))
        if not token_ids:
            raise AnswerTokenError(
                f"continuation {self.continuation!r} has no tokens under this tokenizer; "
                "give a continuation with visible text"
            )
        targets = torch.tensor(token_ids, device=adapter.device)
        offsets = torch.arange(-len(token_ids), 0, device=adapter.device)

        def read(logits: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
            # Token at position p is predicted by the logits at p - 1.
            positions = last[:, None] + offsets
            rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
            log_probs = torch.log_softmax(logits[rows, positions], dim=-1)
            expanded = targets.expand(logits.shape[0], -1)
            return log_probs.gather(-1, expanded[..., None])[..., 0].sum(dim=-1)

        return _Reader(suffix=token_ids, read=read)


@dataclass(frozen=True)
class ClassProb:
    """Softmax probability of one class of a sequence classifier (label name or index)."""

    label: str | int

    def _bind(self, adapter: ModelAdapter) -> _Reader:
        import torch

        _require_task(self, adapter, "sequence-classifier")
        index = _label_index(adapter, self.label)
        return _Reader(suffix=(), read=lambda logits, last: torch.softmax(logits, dim=-1)[:, index])


@dataclass(frozen=True)
class ClassLogit:
    """Logit of one class of a sequence classifier (label name or index)."""

    label: str | int

    def _bind(self, adapter: ModelAdapter) -> _Reader:
        _require_task(self, adapter, "sequence-classifier")
        index = _label_index(adapter, self.label)
        return _Reader(suffix=(), read=lambda logits, last: logits[:, index])


Outcome = LogitDiff | AnswerProb | ClassProb | ClassLogit | ContinuationLogProb

_TASK_OUTCOMES = {
    "causal-lm": "LogitDiff, AnswerProb or ContinuationLogProb",
    "sequence-classifier": "ClassProb or ClassLogit",
}


def _require_task(outcome: Outcome, adapter: ModelAdapter, task: Task) -> None:
    """Raise unless the adapter's model is of the task this outcome reads."""
    if adapter.spec.task != task:
        raise InterventionError(
            f"{type(outcome).__name__} needs a {task} model, but {adapter.spec.path!r} is a "
            f"{adapter.spec.task}; use {_TASK_OUTCOMES[adapter.spec.task]}"
        )


def _answer_tokens(adapter: ModelAdapter, answer: str) -> list[int]:
    """Token ids of `answer` as it would follow a prompt (no special tokens)."""
    return adapter.tokenizer(answer, add_special_tokens=False)["input_ids"]


def _single_token(adapter: ModelAdapter, answer: str) -> int:
    """The one token id of `answer`; AnswerTokenError showing the tokens otherwise."""
    token_ids = _answer_tokens(adapter, answer)
    if len(token_ids) != 1:
        tokens = adapter.tokenizer.convert_ids_to_tokens(token_ids)
        raise AnswerTokenError(
            f"answer {answer!r} is {len(token_ids)} tokens {tokens} under the tokenizer of "
            f"{adapter.spec.path!r}; next-token outcomes need single-token answers; pick "
            "another answer string (mind the leading space) or use ContinuationLogProb"
        )
    return token_ids[0]


def _label_index(adapter: ModelAdapter, label: str | int) -> int:
    """Class index of a label name (via config.id2label) or a checked index."""
    config = adapter.model.config
    names = {name: index for index, name in config.id2label.items()}
    index = names.get(label) if isinstance(label, str) else label
    if index is None or not 0 <= index < config.num_labels:
        raise InterventionError(
            f"unknown label {label!r} for {adapter.spec.path!r}; its labels are "
            f"{[config.id2label[i] for i in range(config.num_labels)]} "
            f"(indices 0 to {config.num_labels - 1})"
        )
    return index


def _at_last(logits: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Logits at each row's last real token: (batch, seq, vocab) -> (batch, vocab)."""
    import torch

    return logits[torch.arange(logits.shape[0], device=logits.device), last]
