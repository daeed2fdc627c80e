"""`Generation`: an outcome read from generated answers, and `GenerationResult`, what `generate_outcomes` gives.

Plain data and regular expressions: torch loads only when `generate_outcomes` runs, so
configs compile without it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from interventions._outcomes import _is_number
from interventions.errors import InterventionError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Generation:
    """Answers generated after each text, parsed into options and averaged into one value per text.

    `parse` maps option names to regular expressions searched in each answer (the generated
    text without special tokens; add `(?i)` for case-insensitive patterns). An answer takes
    the option whose pattern matches earliest in it (a tie goes to the option listed first);
    answers that two or more patterns match are counted as ambiguous. An answer that no
    pattern matches is unparsed: it is counted, and with `unparsed` None it is left out of its
    text's mean (nan when no sample of a text parses); a number counts it at that value (0
    makes a target share the share of all answers).
    An option's value is `values[option]`, or with `target` 1 for the target and 0 otherwise
    (give one of the two). Decoding is greedy at `temperature` 0 (one sample); above 0 each of
    `samples` answers is drawn from softmax(logits / temperature) over the whole vocabulary,
    after the model's own logits processors (its generation config's temperature, top-k and
    top-p are not applied).
    """

    max_new_tokens: int
    parse: Mapping[str, str]
    _: KW_ONLY
    target: str | None = None
    values: Mapping[str, float] | None = None
    samples: int = 1
    temperature: float = 0.0
    unparsed: float | None = None
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _values: Mapping[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InterventionError(f"Generation max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        if not isinstance(self.parse, Mapping) or not self.parse:
            raise InterventionError(
                f"Generation parse must map option names to regular expressions, got {self.parse!r}; "
                'e.g. {"yes": "(?i)yes", "no": "(?i)no"}'
            )
        object.__setattr__(self, "parse", MappingProxyType(dict(self.parse)))
        object.__setattr__(self, "_patterns", tuple(_compiled(name, pattern) for name, pattern in self.parse.items()))
        object.__setattr__(self, "_values", MappingProxyType(self._option_values()))
        if self.values is not None:
            object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise InterventionError(f"Generation samples must be an int >= 1, got {self.samples!r}")
        if not _is_number(self.temperature) or self.temperature < 0:
            raise InterventionError(f"Generation temperature must be a number >= 0, got {self.temperature!r}")
        if self.temperature == 0 and self.samples > 1:
            raise InterventionError(
                f"Generation with temperature 0 decodes greedily, so its {self.samples} samples would be one answer "
                "repeated; set temperature > 0 to sample, or samples=1"
            )
        if self.unparsed is not None and not _is_number(self.unparsed):
            raise InterventionError(f"Generation unparsed must be None or a finite number, got {self.unparsed!r}")

    def _option_values(self) -> dict[str, float]:
        """Each option's value, from `values` or `target`; exactly one of the two is given."""
        options = list(self.parse)
        if (self.target is None) == (self.values is None):
            raise InterventionError(
                "Generation needs exactly one of target (the share of answers giving it) and values "
                f"(the mean value of the answers' options); got target={self.target!r}, values={self.values!r}"
            )
        if self.target is not None:
            if self.target not in self.parse:
                raise InterventionError(
                    f"Generation target {self.target!r} is not an option name; option names are {options}"
                )
            return {name: float(name == self.target) for name in options}
        if not isinstance(self.values, Mapping) or set(self.values) != set(options):
            raise InterventionError(
                f"Generation values must give every parsed option a number: options {options}, got {self.values!r}"
            )
        for name, value in self.values.items():
            if not _is_number(value):
                raise InterventionError(f"Generation value of {name!r} must be a finite number, got {value!r}")
        return {name: float(self.values[name]) for name in options}

    def value_of(self, option: str | None) -> float:
        """The value an answer parsed to `option` counts at (None: unparsed; nan when left out)."""
        if option is None:
            return math.nan if self.unparsed is None else float(self.unparsed)
        return self._values[option]

    @property
    def sampled(self) -> bool:
        """Whether answers are sampled (temperature above 0) rather than decoded greedily."""
        return self.temperature > 0

    def parse_answer(self, answer: str) -> tuple[str | None, bool]:
        """(option, ambiguous): the option matching earliest in `answer` (None when none does), and
        whether two or more options matched."""
        found = [
            (match.start(), order, name)
            for order, (name, pattern) in enumerate(zip(self.parse, self._patterns))
            if (match := pattern.search(answer)) is not None
        ]
        if not found:
            return None, False
        return min(found)[2], len(found) > 1


@dataclass(frozen=True)
class GenerationResult:
    """Generated answers and the values they give, per text (aligned with the texts asked for).

    `answers[i][s]` is sample s of text i and `options[i][s]` the option it parsed to (None:
    unparsed). `values[i]` is the mean value of text i's counted samples (see `Generation`),
    nan when none counts; `unparsed[i]` and `ambiguous[i]` count its answers that no pattern
    matched and that several did. The same `seed` gives the same answers for a text whatever
    the other texts and the batch size (up to float rounding in the logits).
    """

    texts: tuple[str, ...]
    values: np.ndarray
    answers: tuple[tuple[str, ...], ...]
    options: tuple[tuple[str | None, ...], ...]
    unparsed: np.ndarray
    ambiguous: np.ndarray
    generation: Generation
    seed: int

    def to_frame(self) -> pd.DataFrame:
        """One row per text and sample: text, sample, answer, option (None: unparsed), value."""
        import pandas as pd

        rows = [
            (text, sample, answer, option, self.generation.value_of(option))
            for text, answers, options in zip(self.texts, self.answers, self.options)
            for sample, (answer, option) in enumerate(zip(answers, options))
        ]
        return pd.DataFrame(rows, columns=["text", "sample", "answer", "option", "value"])

    def summary(self) -> str:
        """Counts of answers, unparsed and ambiguous ones, and the mean value, in a few lines."""
        total = sum(len(answers) for answers in self.answers)
        parsed = total - int(self.unparsed.sum())
        mean = float(np.nanmean(self.values)) if np.isfinite(self.values).any() else math.nan
        decoding = (
            f"{self.generation.samples} sample(s) per text at temperature {self.generation.temperature:g}, seed {self.seed}"
            if self.generation.sampled
            else "greedy decoding"
        )
        return (
            f"{len(self.texts)} texts, {decoding}, up to {self.generation.max_new_tokens} new tokens\n"
            f"{total} answers: {parsed} parsed ({int(self.ambiguous.sum())} ambiguous), {total - parsed} unparsed\n"
            f"mean value over texts: {mean:.4g}"
        )

    def __str__(self) -> str:
        return self.summary()


def _compiled(name: str, pattern: object) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise InterventionError(f"Generation parse pattern of {name!r} must be a non-empty string, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as error:
        raise InterventionError(
            f"Generation parse pattern of {name!r} ({pattern!r}) is not a regular expression: {error}"
        ) from None
