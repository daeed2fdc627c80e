"""Numbers as text that cannot mislead: p-values that never read 0, fairness figures that say when they are undefined.

One place for these rules, so every summary line, table and report states them alike.
"""

from __future__ import annotations

import math

import pandas as pd

P_FLOOR = 1e-16
"""Below this a p-value has no digits worth reading: many are computed as a difference from 1, which
cannot resolve them, or underflow to 0. It is shown as a bound, never as a number or as 0."""


def format_p_value(p: float, spec: str = ".4g", *, name: str | None = None, floor: float = P_FLOOR) -> str:
    """A p-value as text: `spec`-formatted, or a bound below `floor`, so it never reads "0".

    Bare, for a table cell: "0.0123", "<1e-16", and "" when missing (nan). With `name`, for a
    sentence: "p = 0.0123", "p < 1e-16", "p = nan". Tables that round to three decimals pass
    `floor=0.001` and read "<0.001" below it.

    >>> format_p_value(0.0), format_p_value(0.0, name="Holm-adjusted p"), format_p_value(4e-4, ".3f", floor=1e-3)
    ('<1e-16', 'Holm-adjusted p < 1e-16', '<0.001')
    """
    if name is None:
        if math.isnan(p):
            return ""
        return f"<{floor:g}" if p < floor else f"{p:{spec}}"
    return f"{name} < {floor:g}" if p < floor else f"{name} = {p:{spec}}"


def format_fairness_estimate(metric: str, estimate: float, contrast: str | None, spec: str = ".3f") -> str:
    """A fairness figure as text, or why it is undefined when it is nan.

    A disparate impact ratio compares two values' positive rates; when both are 0 (the ratio
    0/0), it reads "undefined (no positive decisions in either group)" rather than a number that
    could pass the four-fifths rule. A parity figure without a compared pair (`contrast` not a
    string: fewer than two values) reads "undefined (fewer than two values)".

    >>> format_fairness_estimate("disparate_impact_ratio", float("nan"), "male vs female")
    'undefined (no positive decisions in either group)'
    """
    if not math.isnan(estimate):
        return f"{estimate:{spec}}"
    if metric == "disparate_impact_ratio" and isinstance(contrast, str):
        return "undefined (no positive decisions in either group)"
    return "undefined (fewer than two values)"


def frame_text(frame: pd.DataFrame, *, html: bool = False) -> str:
    """A results frame as plain text (or HTML): numbers to four significant digits, p-values by `format_p_value`."""
    formatters = {column: format_p_value for column in frame.columns if column in ("p_value", "p_adjusted")}
    render = frame.to_html if html else frame.to_string
    return render(index=False, float_format="{:.4g}".format, formatters=formatters)
