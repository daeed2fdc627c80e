"""`summary.md`: the run's effects in plain language, for terminals and pull requests."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from causal import EffectTable

from experiments._compile import ContrastPlan, Experiment

_OUTCOME_WORDS = {
    "logit_diff": "logit difference {positive!r} minus {negative!r} at the decision position",
    "answer_prob": "probability of the answer {target!r}, normalised over the answers",
    "class_prob": "probability of the classifier label {label!r}",
    "class_logit": "logit of the classifier label {label!r}",
    "continuation_logprob": "log-likelihood of the continuation {continuation!r}",
}


def render_summary(experiment: Experiment, effects: EffectTable, manifest: Mapping[str, Any]) -> str:
    """The Markdown summary of one run."""
    config = experiment.config
    frame = effects.to_frame()
    level = f"{config.inference.level:.0%}"
    exact = config.sampling.mode == "exact"
    lines = [
        f"# {config.name}",
        "",
        f"- model: `{config.model.id}` (fingerprint `{str(manifest.get('model_fingerprint', ''))[:16]}`), "
        f"device `{manifest.get('device')}`",
        f"- outcome: {_outcome_words(experiment)}",
        f"- units: {manifest.get('n_units')} "
        + ("(every unit of the factor space, weighted by its probability: no sampling error)" if exact
           else f"sampled from the structural model with seed {config.sampling.seed}"),
        f"- intervals: {level}; " + ("exact population values" if exact else
           f"paired t-interval and percentile bootstrap ({config.inference.bootstrap} resamples); "
           f"p-values adjusted by {_CORRECTION[config.inference.correction]} across all "
           f"{int(frame['p_value'].notna().sum())} tests of the run"),
        f"- config hash `{manifest.get('config_hash', '')[:16]}`",
        "",
        "Each effect is the mean over units of outcome(do(treatment = first value)) minus "
        "outcome(do(treatment = second value)), every other factor's noise held equal. "
        "A total effect lets the treatment's descendants follow it; a direct effect holds the named "
        "mediators at each unit's factual values.",
        "",
        "## Effects",
        "",
        *_overall_table(experiment, frame, level),
        "",
        *_graph_checks(experiment, frame),
    ]
    for plan in experiment.contrasts:
        if plan.moderators:
            lines += ["", *_strata_section(plan, frame, level)]
    return "\n".join(lines).rstrip() + "\n"


_CORRECTION = {"holm": "Holm", "bh": "Benjamini-Hochberg"}


def _outcome_words(experiment: Experiment) -> str:
    outcome = experiment.config.outcome
    answers = outcome.answers or {}
    return _OUTCOME_WORDS[outcome.type].format(
        positive=answers.get("positive"),
        negative=answers.get("negative"),
        target=outcome.target or next(iter(answers), None),
        label=outcome.label,
        continuation=outcome.continuation,
    )


def _rows(frame: pd.DataFrame, plan: ContrastPlan, analysis: str) -> pd.DataFrame:
    return frame[
        (frame["analysis"] == analysis)
        & (frame["treatment"] == plan.treatment)
        & (frame["contrast"] == plan.contrast)
        & (frame["estimand"] == plan.estimand)
    ]


def _number(value: float) -> str:
    """Three decimals, or scientific notation for tiny non-zero values so they never print as 0.000."""
    return f"{value:+.3f}" if value == 0 or abs(value) >= 5e-4 else f"{value:+.1e}"


def _interval(row: pd.Series) -> str:
    if math.isnan(row["ci_low"]):
        return "n/a"
    return f"[{_number(row['ci_low'])}, {_number(row['ci_high'])}]"


def _p(value: float) -> str:
    return "" if math.isnan(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def _reading(row: pd.Series, negligible: float) -> str:
    if math.isnan(row["ci_low"]):
        return "too few units"
    if -negligible <= row["ci_low"] and row["ci_high"] <= negligible and (negligible > 0 or row["estimate"] == 0):
        return f"negligible (within ±{negligible:g})" if negligible > 0 else "exactly zero"
    if row["ci_low"] > 0:
        return "increases"
    if row["ci_high"] < 0:
        return "decreases"
    return "no detectable effect"


def _headline(rows: pd.DataFrame) -> pd.Series:
    """The row that states an effect: the t row for sampled runs, the exact row otherwise."""
    primary = rows[rows["method"].isin(["t", "exact"])]
    return primary.iloc[0]


def _overall_table(experiment: Experiment, frame: pd.DataFrame, level: str) -> list[str]:
    negligible = experiment.config.inference.negligible
    lines = [
        f"| treatment | contrast | estimand | effect | {level} CI (t) | {level} CI (bootstrap) | p adjusted | units | reading |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for plan in experiment.contrasts:
        rows = _rows(frame, plan, "ate")
        head = _headline(rows)
        boot = rows[rows["method"] == "bootstrap"]
        estimand = plan.estimand + (f" (holding {', '.join(plan.treated.hold)})" if plan.treated.hold else "")
        lines.append(
            f"| {plan.treatment} | do({plan.treated.value}) vs do({plan.reference.value}) | {estimand} "
            f"| {_number(head['estimate'])} | {_interval(head)} | {_interval(boot.iloc[0]) if len(boot) else ''} "
            f"| {_p(head['p_adjusted'])} | {int(head['n_units'])} | {_reading(head, negligible)} |"
        )
    return lines


def _graph_checks(experiment: Experiment, frame: pd.DataFrame) -> list[str]:
    """Compare each total effect with what the declared graph allows."""
    graph = experiment.graph
    lines = ["## Checks against the declared graph", ""]
    for plan in experiment.contrasts:
        if plan.estimand != "total":
            continue
        head = _headline(_rows(frame, plan, "ate"))
        reading = _reading(head, experiment.config.inference.negligible)
        has_path = graph.outcome in graph.descendants(plan.treatment)
        name = f"{plan.treatment} ({plan.contrast})"
        if not has_path and reading in ("increases", "decreases"):
            lines.append(
                f"- **{name}: the graph declares no path to {graph.outcome}, yet the model's outcome changes** "
                f"({_number(head['estimate'])}, {_interval(head)}). The model uses this factor; revise the graph or investigate."
            )
        elif not has_path:
            lines.append(f"- {name}: no declared path to {graph.outcome}, and the run agrees ({reading}, {_interval(head)}).")
        elif reading.startswith(("negligible", "exactly")):
            lines.append(
                f"- {name}: the graph allows an effect on {graph.outcome}, but the model's is {reading} "
                f"({_interval(head)})."
            )
        elif reading == "no detectable effect":
            lines.append(
                f"- {name}: the graph allows an effect on {graph.outcome}, but none was detected "
                f"({_interval(head)}); an interval this wide is no evidence of no effect."
            )
        else:
            lines.append(f"- {name}: an effect, along a declared path ({_number(head['estimate'])}, {_interval(head)}).")
    return lines


def _strata_section(plan: ContrastPlan, frame: pd.DataFrame, level: str) -> list[str]:
    lines = [f"## {plan.treatment}: do({plan.treated.value}) vs do({plan.reference.value}), per stratum", ""]
    cate = _rows(frame, plan, "cate")
    for moderator in plan.moderators:
        strata = cate[cate["moderator"] == moderator]
        lines += [
            f"| {moderator} | effect | {level} CI (t) | {level} CI (bootstrap) | p adjusted | units |",
            "|---|---|---|---|---|---|",
        ]
        for stratum in dict.fromkeys(strata["stratum"]):
            rows = strata[strata["stratum"] == stratum]
            head = _headline(rows)
            boot = rows[rows["method"] == "bootstrap"]
            lines.append(
                f"| {stratum} | {_number(head['estimate'])} | {_interval(head)} "
                f"| {_interval(boot.iloc[0]) if len(boot) else ''} | {_p(head['p_adjusted'])} | {int(head['n_units'])} |"
            )
        test = _rows(frame, plan, "heterogeneity")
        test = test[test["moderator"] == moderator]
        if len(test):
            row = test.iloc[0]
            lines += ["", f"Does the effect differ across {moderator}? Wald test (HC3 robust): "
                          f"statistic {row['estimate']:.2f}, p-value {_p(row['p_value'])} (adjusted {_p(row['p_adjusted'])})."]
        lines.append("")
    return lines
