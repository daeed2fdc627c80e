"""Outcome specs: what number a model's logits give for one text.

Each spec binds to a loaded model (`_bind`), which checks the task and resolves answer
tokens and labels before any forward pass, and returns a `_Reader`. Option outcomes
(`ChoiceProb`, `ExpectedValue` over a causal LM's option strings) also bind to a
`_ChoiceReader`, read from the log-probabilities of option strings of any token length
(`_bind_evaluation` picks the reading evaluation uses). Values are computed in float32 (or
float64 when given it) whatever the model's dtype: readers upcast the logits they select
before any softmax. The specs are plain data: torch loads only when one binds, so configs
compile without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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
class _ChoiceReader:
    """An outcome read from the log-probabilities of token strings that continue each text.

    `strings` are distinct token id sequences (one or more tokens each); `read` maps their
    (batch, strings) log-probabilities, in float32, to one value per row.
    """

    strings: tuple[tuple[int, ...], ...]
    read: Callable[[torch.Tensor], torch.Tensor]


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
            final = _upcast(_at_last(logits, last))
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
            return torch.softmax(_upcast(_at_last(logits, last)[:, token_ids]), dim=-1)[:, target]

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
            log_probs = torch.log_softmax(_upcast(logits[rows, positions]), dim=-1)
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
        return _Reader(suffix=(), read=lambda logits, last: torch.softmax(_upcast(logits), dim=-1)[:, index])


@dataclass(frozen=True)
class ClassLogit:
    """Logit of one class of a sequence classifier (label name or index)."""

    label: str | int

    def _bind(self, adapter: ModelAdapter) -> _Reader:
        _require_task(self, adapter, "sequence-classifier")
        index = _label_index(adapter, self.label)
        return _Reader(suffix=(), read=lambda logits, last: _upcast(logits[:, index]))


@dataclass(frozen=True)
class ChoiceProb:
    """Probability of the `target` option among options whose strings have any token length.

    `options` maps option names to the strings that give each, e.g.
    {"yes": [" yes", " Yes"], "no": [" no", " No"]}. A string's probability is the product of
    its tokens' probabilities as a continuation of the text (tokenized on its own, as
    `ContinuationLogProb` scores it), an option's the sum over its strings, and the outcome
    the target's share of the options' total. No string may begin another: " yes" and
    " yes." describe overlapping answers, and the sum would count them twice.
    """

    options: Mapping[str, Sequence[str]]
    target: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _checked_options(self, self.options))
        if self.target not in self.options:
            raise InterventionError(
                f"ChoiceProb target {self.target!r} is not an option name; option names are {list(self.options)}"
            )

    def _bind(self, adapter: ModelAdapter) -> _Reader:
        return _next_token_reader(self, adapter, self._bind_choices(adapter))

    def _bind_choices(self, adapter: ModelAdapter) -> _ChoiceReader:
        _require_task(self, adapter, "causal-lm")
        return _option_reader(adapter, self.options, [float(name == self.target) for name in self.options])


@dataclass(frozen=True)
class ExpectedValue:
    """Sum of value x probability over a causal LM's options or a classifier's labels.

    `values` maps each option or label name to its number. With `options` (same names, each
    to its strings) the model is a causal LM and the probabilities are `ChoiceProb`'s. Without,
    it is a sequence classifier and `values` names labels (names from `config.id2label`, or
    indices): the probabilities are a softmax over the named labels' logits, i.e. the
    classifier's own probabilities restricted to them and renormalised (name every label to
    use them unchanged).
    """

    values: Mapping[str | int, float]
    options: Mapping[str, Sequence[str]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.values, Mapping) or len(self.values) < 2:
            raise InterventionError(
                f"ExpectedValue values must map at least two options or labels to numbers, got {self.values!r}; "
                "an expectation over one outcome is its value"
            )
        for name, value in self.values.items():
            if not _is_number(value):
                raise InterventionError(f"ExpectedValue value of {name!r} must be a finite number, got {value!r}")
        object.__setattr__(
            self, "values", MappingProxyType({name: float(value) for name, value in self.values.items()})
        )
        if self.options is None:
            return
        object.__setattr__(self, "options", _checked_options(self, self.options))
        if set(self.options) != set(self.values):
            raise InterventionError(
                f"ExpectedValue values name {list(self.values)} but options name {list(self.options)}; "
                "give every option exactly one value"
            )

    def _bind(self, adapter: ModelAdapter) -> _Reader:
        import torch

        if self.options is not None:
            return _next_token_reader(self, adapter, self._bind_choices(adapter))
        _require_task(self, adapter, "sequence-classifier")
        indices = [_label_index(adapter, label) for label in self.values]
        if len(set(indices)) < len(indices):
            raise InterventionError(
                f"ExpectedValue values {dict(self.values)} name one label twice (by name and by index); name each once"
            )
        weights = torch.tensor(list(self.values.values()), device=adapter.device)

        def read(logits: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
            probabilities = torch.softmax(_upcast(logits[:, indices]), dim=-1)
            return probabilities @ weights.to(probabilities.dtype)

        return _Reader(suffix=(), read=read)

    def _bind_choices(self, adapter: ModelAdapter) -> _ChoiceReader:
        _require_task(self, adapter, "causal-lm")
        if self.options is None:
            raise InterventionError(
                "ExpectedValue without options reads a sequence classifier's labels; give options "
                "{name: [strings]} beside values to read a causal LM's answers"
            )
        return _option_reader(adapter, self.options, [self.values[name] for name in self.options])


Outcome = LogitDiff | AnswerProb | ChoiceProb | ExpectedValue | ClassProb | ClassLogit | ContinuationLogProb

_TASK_OUTCOMES = {
    "causal-lm": "LogitDiff, AnswerProb, ChoiceProb, ExpectedValue with options or ContinuationLogProb",
    "sequence-classifier": "ClassProb, ClassLogit or ExpectedValue without options",
}


def _bind_evaluation(adapter: ModelAdapter, outcome: Outcome) -> _Reader | _ChoiceReader:
    """How evaluation reads `outcome`: options from their strings' log-probabilities (any token
    length), every other outcome from one forward's logits."""
    if isinstance(outcome, ChoiceProb) or (isinstance(outcome, ExpectedValue) and outcome.options is not None):
        return outcome._bind_choices(adapter)
    return outcome._bind(adapter)


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


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    """`logits` in float32 at least, so half-precision models' outcomes are computed in float32."""
    import torch

    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _is_number(value: object) -> bool:
    """Whether `value` is a finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _checked_options(outcome: ChoiceProb | ExpectedValue, options: object) -> Mapping[str, tuple[str, ...]]:
    """`options` as a read-only {name: strings} mapping: at least two options, each with distinct non-empty strings."""
    kind = type(outcome).__name__
    if not isinstance(options, Mapping) or len(options) < 2:
        raise InterventionError(
            f"{kind} options must map at least two option names to their strings, got {options!r}; "
            'e.g. {"yes": [" yes", " Yes"], "no": [" no", " No"]}'
        )
    checked = {}
    for name, strings in options.items():
        if isinstance(strings, str) or not isinstance(strings, Sequence) or not strings:
            raise InterventionError(
                f"{kind} option {name!r} must list its strings, got {strings!r}; wrap a single string in a list"
            )
        if not all(isinstance(string, str) and string for string in strings):
            raise InterventionError(f"{kind} option {name!r} has an empty or non-string entry in {list(strings)}")
        checked[name] = tuple(strings)
    every = [string for strings in checked.values() for string in strings]
    repeated = sorted({string for string in every if every.count(string) > 1})
    if repeated:
        raise InterventionError(
            f"{kind} option strings {repeated} appear more than once; give each string to one option"
        )
    return MappingProxyType(checked)


def _option_reader(
    adapter: ModelAdapter, options: Mapping[str, tuple[str, ...]], weights: list[float]
) -> _ChoiceReader:
    """A reader of sum(weight x option probability), the options normalised over each other.

    An option's log-probability is the log-sum-exp of its strings' log-probabilities.
    """
    import torch

    strings, columns = [], []
    for name, texts in options.items():
        columns.append(list(range(len(strings), len(strings) + len(texts))))
        for text in texts:
            token_ids = tuple(_answer_tokens(adapter, text))
            if not token_ids:
                raise AnswerTokenError(f"option {name!r} string {text!r} has no tokens under this tokenizer")
            strings.append(token_ids)
    _check_no_string_begins_another(adapter, strings)
    weight = torch.tensor(weights, dtype=torch.float32, device=adapter.device)

    def read(log_probs: torch.Tensor) -> torch.Tensor:
        per_option = torch.stack([torch.logsumexp(log_probs[:, found], dim=-1) for found in columns], dim=-1)
        return torch.softmax(per_option, dim=-1) @ weight.to(per_option.dtype)

    return _ChoiceReader(strings=tuple(strings), read=read)


def _check_no_string_begins_another(adapter: ModelAdapter, strings: list[tuple[int, ...]]) -> None:
    """Raise when one option string's tokens begin another's: their answers overlap."""
    for first in strings:
        for second in strings:
            if first is not second and second[: len(first)] == first:
                shown = [adapter.tokenizer.decode(list(ids)) for ids in (first, second)]
                raise InterventionError(
                    f"option strings {shown[0]!r} and {shown[1]!r} overlap: under this tokenizer every answer "
                    f"that begins {shown[1]!r} begins {shown[0]!r}, so its probability would count twice; drop one"
                )


def _next_token_reader(outcome: ChoiceProb | ExpectedValue, adapter: ModelAdapter, choices: _ChoiceReader) -> _Reader:
    """The one-forward form of an options reader (patching and saliency read one forward per
    text); AnswerTokenError unless every option string is a single token."""
    import torch

    longer = [adapter.tokenizer.decode(list(ids)) for ids in choices.strings if len(ids) > 1]
    if longer:
        raise AnswerTokenError(
            f"{type(outcome).__name__} option strings {longer} are several tokens each; patching and saliency read "
            "one forward per text and need single-token strings; evaluate_outcomes and evaluate_outcome_set read any"
        )
    first = [ids[0] for ids in choices.strings]

    def read(logits: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        return choices.read(torch.log_softmax(_upcast(_at_last(logits, last)), dim=-1)[:, first])

    return _Reader(suffix=(), read=read)
