"""A pre-registered hypothesis about an effect: the claim itself, checked on construction.

Kept apart from judging (`_hypotheses`), which needs pandas and scipy, so that compiling a
config (and `paribus validate`) stays cheap.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from causal.errors import EstimationError

Direction = Literal["positive", "negative"]
TestKind = Literal["directional", "equivalence"]

_EFFECT_TEXT = re.compile(r"^\s*([^\[\]\s]+)\s*\[\s*([^\[\]]+?)\s*\]\s*$")


@dataclass(frozen=True)
class Hypothesis:
    """One pre-registered claim about the effect of `treatment` on the outcome.

    `contrast` reads "a vs b" (the effect Y(do a) - Y(do b)); None means every contrast of
    the treatment in the table, all of which must satisfy the claim. Exactly one of
    `direction` (with `min_effect`, the smallest effect of interest, a magnitude) and
    `equivalence` (the TOST margin) is set. `estimand` picks the effects table's rows
    ("total" or "direct"), `outcome` the rows of one outcome in a table of several (None:
    the table holds one).
    """

    id: str
    claim: str
    treatment: str
    contrast: str | None
    direction: Direction | None = None
    min_effect: float = 0.0
    equivalence: float | None = None
    estimand: str = "total"
    outcome: str | None = None

    def __post_init__(self) -> None:
        where = f"hypothesis {self.id!r}"
        if (self.direction is None) == (self.equivalence is None):
            raise EstimationError(
                f"{where}: set exactly one of direction and equivalence; got direction="
                f"{self.direction!r}, equivalence={self.equivalence!r}"
            )
        if self.direction is not None and self.direction not in ("positive", "negative"):
            raise EstimationError(f"{where}: direction must be 'positive' or 'negative'; got {self.direction!r}")
        if not (math.isfinite(self.min_effect) and self.min_effect >= 0):
            raise EstimationError(
                f"{where}: min_effect is a magnitude and must be finite and >= 0; got "
                f"{self.min_effect!r} (the direction gives the sign)"
            )
        if self.equivalence is not None:
            if not (math.isfinite(self.equivalence) and self.equivalence > 0):
                raise EstimationError(
                    f"{where}: the equivalence margin must be finite and > 0; got {self.equivalence!r}"
                )
            if self.min_effect != 0:
                raise EstimationError(
                    f"{where}: min_effect applies to directional claims only; got min_effect="
                    f"{self.min_effect!r} with equivalence={self.equivalence!r}; drop min_effect"
                )

    @classmethod
    def parse_effect(cls, text: str) -> tuple[str, str | None]:
        """Split "insurance[none vs private]" into (treatment, contrast); "weekday[*]" gives None."""
        match = _EFFECT_TEXT.match(text)
        if match is None:
            raise EstimationError(f"an effect reads 'treatment[a vs b]' or 'treatment[*]'; got {text!r}")
        treatment, contrast = match.groups()
        if contrast == "*":
            return treatment, None
        arms = [arm.strip() for arm in contrast.split(" vs ")]
        if len(arms) != 2 or not all(arms):
            raise EstimationError(
                f"the contrast in {text!r} must read 'a vs b' (or '*' for every contrast); got {contrast!r}"
            )
        return treatment, f"{arms[0]} vs {arms[1]}"

    @property
    def effect(self) -> str:
        """The effect as written in a config: "insurance[none vs private]" or "weekday[*]"."""
        return f"{self.treatment}[{self.contrast or '*'}]"

    @property
    def test(self) -> TestKind:
        """ "directional" or "equivalence"."""
        return "equivalence" if self.equivalence is not None else "directional"
