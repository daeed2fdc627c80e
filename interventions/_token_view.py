"""Per-token attention and saliency of a few units in both arms, and an HTML fragment that
colours them for a report."""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd

from interventions._adapter import ModelAdapter
from interventions._attention import attention_evidence
from interventions._encoded import TOKEN_COLUMNS
from interventions._outcomes import Outcome
from interventions._saliency import gradient_x_input, integrated_gradients
from interventions._template import RenderedText
from interventions.errors import InterventionError

VIEW_COLUMNS = ("unit", "arm", *TOKEN_COLUMNS[1:])


def token_view(
    adapter: ModelAdapter,
    factual: Sequence[RenderedText],
    counterfactual: Sequence[RenderedText],
    factors: Sequence[str],
    outcome: Outcome,
    *,
    units: Sequence[int] | None = None,
    n_steps: int = 50,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Every token of each unit's factual and counterfactual text with its evidence values.

    Columns `VIEW_COLUMNS`: per token, the decision position's mean attention and rollout,
    gradient x input and integrated gradients from the pad baseline (defined for arms of
    any token length); `factor` names the slot a token belongs to. Meant for a handful of
    units: it runs every readout on both arms.
    """
    if len(factual) != len(counterfactual):
        raise InterventionError(
            f"factual has {len(factual)} texts but counterfactual {len(counterfactual)}; give "
            "each unit's text in both arms, in the same order"
        )
    options = {"units": units, "batch_size": batch_size}
    arms = []
    for arm, texts in (("factual", factual), ("counterfactual", counterfactual)):
        readouts = (
            attention_evidence(adapter, texts, factors, **options),
            gradient_x_input(adapter, texts, factors, outcome, **options),
            integrated_gradients(adapter, texts, factors, outcome, n_steps=n_steps, **options),
        )
        arms += [readout.tokens.assign(arm=arm) for readout in readouts]
    return pd.concat(arms, ignore_index=True)[list(VIEW_COLUMNS)]


def render_token_view(view: pd.DataFrame) -> str:
    """An HTML fragment: per method, unit and arm, the tokens coloured by value.

    Red is positive and blue negative, opacity scaled by the largest |value| of the method
    within the unit (both arms), so the arms of a unit are comparable. Slot tokens are
    underlined. Every token, label and title is HTML-escaped.
    """
    missing = [column for column in VIEW_COLUMNS if column not in view.columns]
    if missing:
        raise InterventionError(f"token view lacks columns {missing}; pass the frame `token_view` returns")
    sections = []
    for (method, baseline), rows in view.groupby(["method", view["baseline"].fillna("")], sort=False):
        title = method if not baseline else f"{method} ({baseline} baseline)"
        lines = [f"<h4>{html.escape(title)}</h4>"]
        for unit, unit_rows in rows.groupby("unit", sort=False):
            scale = unit_rows["value"].abs().max()
            for arm, arm_rows in unit_rows.groupby("arm", sort=False):
                spans = "".join(
                    _token_span(token, value, scale, factor)
                    for token, value, factor in zip(arm_rows["token"], arm_rows["value"], arm_rows["factor"])
                )
                label = html.escape(f"unit {unit}, {arm}")
                lines.append(
                    f'<div class="paribus-tokens"><span class="paribus-label">{label}</span> '
                    f'<span style="white-space: pre-wrap">{spans}</span></div>'
                )
        sections.append('<section class="paribus-token-view">' + "\n".join(lines) + "</section>")
    return "\n".join(sections)


def _token_span(token: str, value: float, scale: float, factor: object) -> str:
    """One token as a coloured, escaped <span> with its value (and slot) as the title."""
    strength = abs(value) / scale if scale > 0 else 0.0
    colour = "220, 50, 47" if value >= 0 else "38, 139, 210"
    style = f"background-color: rgba({colour}, {strength:.3f})"
    title = f"{value:.4g}"
    if isinstance(factor, str):
        style += "; border-bottom: 2px solid #333"
        title += f" ({factor})"
    return (
        f'<span style="{style}" title="{html.escape(title, quote=True)}">{html.escape(str(token), quote=True)}</span>'
    )
