"""A config's outcomes compiled into readers, and the references other sections make to them by name.

Stage: config. May import interventions, experiments.errors and the config stage.

A run reads every outcome from the same texts: the logit-based ones from one forward
pass per text, a generation outcome by decoding. Hypotheses, fairness, patching sweeps
and evidence each use one outcome, named by their `outcome` key (default: the first).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from experiments.config._quote import listed, quoted, shortened
from experiments.config._schema import ExperimentConfig, OutcomeConfig
from experiments.errors import ConfigError
from interventions import (
    AnswerProb,
    ChoiceProb,
    ClassLogit,
    ClassProb,
    ContinuationLogProb,
    ExpectedValue,
    Generation,
    InterventionError,
    LogitDiff,
    Outcome,
)

OUTCOME_TASKS = {
    "logit_diff": "causal-lm",
    "answer_prob": "causal-lm",
    "choice_prob": "causal-lm",
    "expected_value": "causal-lm",
    "generation": "causal-lm",
    "continuation_logprob": "causal-lm",
    "class_prob": "sequence-classifier",
    "class_logit": "sequence-classifier",
}
"""The model task each outcome type reads (expected_value without options: a classifier's; see outcome_task)."""

DEFAULT_THRESHOLD = {"logit_diff": 0.0, "class_logit": 0.0, "answer_prob": 0.5, "class_prob": 0.5, "choice_prob": 0.5}
"""The natural decision threshold of each outcome type that has one (a logit's 0, a probability's 0.5); a
generation outcome with a target (a share of answers) also has 0.5."""


@dataclass(frozen=True)
class NamedOutcome:
    """One outcome of a run: the name its rows carry in every table, its reader and its config."""

    name: str
    reader: Outcome | Generation
    spec: OutcomeConfig

    @property
    def generated(self) -> bool:
        """True for an outcome decoded token by token (no single forward pass gives it)."""
        return isinstance(self.reader, Generation)


def outcome_path(config: ExperimentConfig, index: int) -> str:
    """The YAML path of the index-th outcome: `outcome` for the one-outcome form, else `outcomes[i]`."""
    return "outcome" if config.outcome is not None else f"outcomes[{index}]"


def outcome_task(spec: OutcomeConfig) -> str:
    """The model task an outcome reads: expected_value over options reads a causal LM, over labels a classifier."""
    if spec.type == "expected_value" and spec.options is None:
        return "sequence-classifier"
    return OUTCOME_TASKS[spec.type]


def compile_outcomes(config: ExperimentConfig) -> tuple[NamedOutcome, ...]:
    """Every outcome's reader, in config order; each type must suit model.task."""
    task = config.model.task
    compiled = []
    for index, (name, spec) in enumerate(config.named_outcomes):
        path = outcome_path(config, index)
        needed = outcome_task(spec)
        if needed != task:
            fitting = ", ".join(kind for kind, kind_task in OUTCOME_TASKS.items() if kind_task == task)
            raise ConfigError(
                f"{spec.type} reads a {needed} model, but model.task is {task}; "
                f"use one of {fitting}, or set model.task: {needed}",
                path=f"{path}.type",
            )
        try:
            compiled.append(NamedOutcome(name, _reader(spec), spec))
        except InterventionError as error:
            raise ConfigError(shortened(str(error)), path=path) from None
    return tuple(compiled)


def referenced_outcome(outcomes: tuple[NamedOutcome, ...], name: str | None, path: str) -> NamedOutcome:
    """The outcome a section names by `name` (None: the first); ConfigError at `path` for an unknown name."""
    if name is None:
        return outcomes[0]
    for outcome in outcomes:
        if outcome.name == name:
            return outcome
    names = [outcome.name for outcome in outcomes]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; the outcomes are {listed(names)}"
    raise ConfigError(f"{quoted(name)} is not an outcome of this config{hint}", path=path)


def decision_threshold(outcome: NamedOutcome, threshold: float | None) -> float:
    """The value above which `outcome` counts as a positive decision: `threshold`, else its type's natural one."""
    if threshold is not None:
        return threshold
    if outcome.spec.type == "generation" and outcome.spec.target is not None:
        return 0.5  # the share of answers parsed to the target
    if outcome.spec.type not in DEFAULT_THRESHOLD:
        raise ConfigError(
            f"outcome {quoted(outcome.name)} ({outcome.spec.type}) has no natural decision threshold; set "
            "fairness.threshold (a unit's decision is positive when its outcome exceeds it)",
            path="fairness.threshold",
        )
    return DEFAULT_THRESHOLD[outcome.spec.type]


def _reader(config: OutcomeConfig) -> Outcome | Generation:
    answers = config.answers or {}
    if config.type == "logit_diff":
        return LogitDiff(positive=answers["positive"], negative=answers["negative"])
    if config.type == "answer_prob":
        return AnswerProb(answers=answers, target=config.target or next(iter(answers)))
    if config.type == "generation":
        return Generation(
            config.max_new_tokens,
            config.parse,
            target=config.target,
            values=config.values,
            samples=config.samples,
            temperature=config.temperature,
            unparsed=config.unparsed,
        )
    if config.type == "choice_prob":
        return ChoiceProb(options=config.options, target=config.target)
    if config.type == "expected_value":
        return ExpectedValue(values=config.values, options=config.options)
    if config.type == "class_prob":
        return ClassProb(label=config.label if config.label is not None else config.label_index)
    if config.type == "class_logit":
        return ClassLogit(label=config.label if config.label is not None else config.label_index)
    return ContinuationLogProb(continuation=config.continuation)
