"""`summary.md`: the run's effects in plain language, for terminals and pull requests.

Stage: report. May import causal, the config and steps stages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from causal import EffectTable, MediationTable, format_fairness_estimate, format_p_value
from experiments.config import ContrastPlan, Experiment, MediationPlan, NamedOutcome, OutcomeConfig
from experiments.report._figures import significant_edges
from experiments.steps import EvidenceResult, ReviewResult

_OUTCOME_WORDS = {
    "logit_diff": "logit difference {positive!r} minus {negative!r} at the decision position",
    "answer_prob": "probability of the answer {target!r}, normalised over the answers",
    "choice_prob": "probability of the option {target!r} among {options} (each option's strings' "
    "continuation probabilities summed, normalised over the options)",
    "expected_value": "expected value {values} under the model's probabilities of {over}",
    "generation": "value of the generated answer parsed by {parse} ({decoding}; {target_words})",
    "class_prob": "probability of the classifier's {label}",
    "class_logit": "logit of the classifier's {label}",
    "continuation_logprob": "log-likelihood of the continuation {continuation!r}",
}


def render_summary(
    experiment: Experiment,
    effects: EffectTable,
    manifest: Mapping[str, Any],
    mediation: MediationTable | None = None,
    evidence: EvidenceResult | None = None,
    review: ReviewResult | None = None,
) -> str:
    """The Markdown summary of one run: the hypotheses' verdicts first, then the effects and what explains them."""
    config = experiment.config
    frame = effects.to_frame()
    level = f"{config.inference.level:.0%}"
    exact = config.sampling.mode == "exact"
    data = manifest.get("data")
    lines = [
        f"# {_md(config.name)}",
        "",
        f"- model: `{_md(config.model.id)}` (fingerprint `{str(manifest.get('model_fingerprint', ''))[:16]}`), "
        f"device `{manifest.get('device')}`",
        *_outcome_lines(experiment),
        (
            _documents_line(data)
            if data is not None
            else f"- units: {manifest.get('n_units')} "
            + (
                "(every unit of the factor space, weighted by its probability: no sampling error)"
                if exact
                else f"sampled from the structural model with seed {config.sampling.seed}"
            )
        ),
        f"- intervals: {level}; "
        + (
            "exact population values"
            if exact
            else f"paired t-interval and {_BOOTSTRAP_WORDS[config.inference.bootstrap_method]} "
            f"({config.inference.bootstrap} resamples); "
            f"p-values adjusted by {_CORRECTION[config.inference.correction]} across all "
            f"{int((frame['p_value'].notna() & (frame['method'] != 'asymptotic_cs')).sum())} fixed-sample tests of the run"
        ),
        *_stopping_lines(manifest.get("stopping")),
        *_generation_lines(manifest.get("generation")),
        f"- config hash `{manifest.get('config_hash', '')[:16]}`",
        "",
        *(
            _verdict_section(review, level, several=len(experiment.outcomes) > 1)
            if review is not None and review.verdicts is not None
            else []
        ),
        _DOCUMENT_EFFECTS
        if data is not None
        else "Each effect is the mean over units of outcome(do(treatment = first value)) minus "
        "outcome(do(treatment = second value)), every other factor's noise held equal. "
        "A total effect lets the treatment's descendants follow it; a direct effect holds the named "
        "mediators at each unit's factual values.",
        "",
    ]
    several = len(experiment.outcomes) > 1
    for outcome in experiment.outcomes:
        rows = frame if frame["outcome"].isna().all() else frame[frame["outcome"] == outcome.name]
        negligible = experiment.negligible(outcome.name)
        lines += [
            f"## Effects on {_md(outcome.name)}" if several else "## Effects",
            "",
            *(
                _overall_table(experiment, rows, level, negligible)
                if data is None
                else _document_effects(experiment, rows, level, negligible)
            ),
            "",
            *_graph_checks(experiment, rows, negligible),
        ]
        for plan in experiment.contrasts:
            if plan.moderators:
                lines += ["", *_strata_section(plan, rows, level, negligible, 1 - config.inference.level)]
        lines.append("")
    if manifest.get("notes"):
        lines += ["Notes:", "", *(f"- {_md(note)}" for note in manifest["notes"])]
    if data is not None:
        lines += ["", *_sources_notes(data), "", *_data_section(data)]
    frame_of_sites = None if mediation is None else mediation.to_frame()
    for index, (plan, record) in enumerate(zip(experiment.mediation, manifest.get("mediation", []), strict=True)):
        if "not_estimable" in record:
            lines += ["", f"## Patching {_md(plan.treatment)} ({_md(plan.contrast)})", "", _not_run(record)]
        else:
            lines += ["", *_mediation_section(plan, record, frame_of_sites[frame_of_sites["sweep"] == index], level)]
    if evidence is not None:
        lines += ["", *_evidence_section(evidence, level)]
    elif "not_estimable" in manifest.get("evidence", {}):
        lines += [
            "",
            "## Evidence: attention, saliency and probes beside the effects",
            "",
            _not_run(manifest["evidence"]),
        ]
    if review is not None and review.fairness is not None:
        lines += ["", *_fairness_section(review, experiment.named(review.decision_outcome), level)]
    return "\n".join(lines).rstrip() + "\n"


_DOCUMENT_EFFECTS = (
    "Each effect reads outcome at the first value minus outcome at the second. Rewrite rows average over the "
    "documents rewritten to both values (a document already at a value is its own text there; only the "
    "treatment's words change, so everything else the document says is held equal). Observational rows compare "
    "the documents as they are, adjusted for the declared graph's backdoor set among the annotated factors. "
    "Human-pair rows average the edits people made between the two values, an edit the other way counted with "
    'its sign reversed. Rows on documents that "were X" are those whose factual value is X: for the '
    "observational estimators, the effect on the treated or on the reference documents."
)


def _stopping_lines(stopping: Mapping[str, Any] | None) -> list[str]:
    """How a precision-targeted run chose its number of units, and the anytime-valid rows that make it safe."""
    if stopping is None:
        return []
    why = (
        f"every effect's anytime-valid interval reached the target half width {stopping['target_half_width']:g}"
        if stopping["reason"] == "target_half_width"
        else "the budget sampling.max_units was spent before every interval was narrow enough"
    )
    return [
        f"- sampling stopped after {stopping['n_units']} units in {stopping['batches']} batches: {why}; "
        "the `asymptotic_cs` rows of effects.csv are confidence sequences, valid under this data-dependent "
        "stopping (their p-values are corrected as their own family)"
    ]


def _generation_lines(records: list[Mapping[str, Any]] | None) -> list[str]:
    """Generated answers per outcome and arm, and how many no pattern matched: none is dropped in silence."""
    if not records:
        return []
    lines = []
    for name in dict.fromkeys(record.get("outcome") for record in records):
        parts = [
            f"{_md(record['arm'])}: {record['unparsed']} of {record['answers']} unparsed"
            + (
                f", {record['texts_without_value']} text(s) with no parsed answer"
                if record["texts_without_value"]
                else ""
            )
            for record in records
            if record.get("outcome") == name
        ]
        about = "" if name is None else f" of {_md(name)}"
        lines.append(f"- generated answers{about} (outcomes.parquet has each): {'; '.join(parts)}")
    return lines


def _documents_line(data: Mapping[str, Any]) -> str:
    documents = data["documents"]
    dropped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in documents["dropped"].items())
    left_out = documents.get("left_out", 0)
    return (
        f"- documents: {documents['kept']} of {documents['rows']} rows of `{_md(data['path'])}` kept"
        + (f", {left_out} left out by data.where or data.limit" if left_out else "")
        + (f" (dropped: {dropped}; see dropped.csv)" if dropped else "")
    )


_SOURCE_WORDS = {
    ("ate", "t"): "rewrite (paired t)",
    ("cate", "t"): "rewrite (paired t)",
    ("observational", "naive"): "observational: difference of group means (unadjusted)",
    ("observational", "regression"): "observational: regression with interactions (g-computation)",
    ("observational", "ipw"): "observational: propensity weighting",
    ("observational", "aipw"): "observational: augmented propensity weighting (doubly robust)",
    ("observational", "matching"): "observational: propensity-score matching",
    ("observational", "exact_matching"): "observational: exact matching on the adjustment set",
    ("human_pairs", "t"): "human-edited pairs (paired t)",
    ("confounding_gap", "regression_minus_t"): "confounding gap: regression minus rewrite",
}
_SOURCE_ANALYSES = {
    "rewrite": ("ate", "cate"),
    "observational": ("observational", "confounding_gap"),
    "human_pairs": ("human_pairs",),
}
_FEW_UNITS = 30
"""Below this many units an interval leans on its approximation; such rows are marked."""


def _document_effects(experiment: Experiment, frame: pd.DataFrame, level: str, negligible: float) -> list[str]:
    """Data mode: each contrast's estimates, source by source as the config asks, all documents then each direction.

    Rows of the same documents (all, or those at one factual value) stand together, so the
    rewrite, the observational estimators and the human pairs line up direction by direction.
    """
    lines = [
        f"| treatment | contrast | documents | source | effect | {level} CI | p adjusted | units | reading |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    few = False
    tests = []
    for plan in experiment.contrasts:
        rows = frame[
            (frame["treatment"] == plan.treatment)
            & (frame["contrast"] == plan.contrast)
            & (frame["estimand"] == plan.estimand)
        ]
        for stratum in _directions(plan, rows):
            for source in plan.sources:
                for row in _source_rows(rows, source, plan.treatment, stratum):
                    documents = "all" if stratum is None else f"were {_md(stratum)}"
                    few |= 0 < row["n_units"] < _FEW_UNITS
                    lines.append(
                        f"| {_md(plan.treatment)} | {_md(plan.contrast)} | {documents} "
                        f"| {_SOURCE_WORDS[(row['analysis'], row['method'])]} | {_effect_cells(row, negligible)} |"
                    )
        tests += _direction_tests(plan, rows)
    if few:
        lines += ["", f"† rests on fewer than {_FEW_UNITS} units: read its interval as approximate."]
    return lines + tests


def _directions(plan: ContrastPlan, rows: pd.DataFrame) -> list[str | None]:
    """All documents, then (with directions) each factual value: the reference, the treated, then any other."""
    if not plan.directions:
        return [None]
    present = set(rows.loc[rows["moderator"] == plan.treatment, "stratum"].dropna())
    first = [value for value in (plan.reference.value, plan.treated.value) if value in present]
    return [None, *first, *sorted(present - set(first))]


def _source_rows(rows: pd.DataFrame, source: str, treatment: str, stratum: str | None) -> list[pd.Series]:
    """One source's rows on one set of documents: the headline method, or every observational method."""
    mine = rows[rows["analysis"].isin(_SOURCE_ANALYSES[source])]
    mine = (
        mine[mine["moderator"].isna()]
        if stratum is None
        else mine[(mine["moderator"] == treatment) & (mine["stratum"] == stratum)]
    )
    if source != "observational":
        mine = mine[mine["method"] == "t"]
    return [row for _, row in mine.iterrows() if (row["analysis"], row["method"]) in _SOURCE_WORDS]


def _effect_cells(row: pd.Series, negligible: float) -> str:
    """Effect, interval, adjusted p-value, units and reading; a not-estimable row says why instead."""
    units = f"{int(row['n_units'])}" + (" †" if 0 < row["n_units"] < _FEW_UNITS else "")
    if isinstance(row.get("reason"), str):
        return f"not estimable | {_md(row['reason'])} | | {units} | not estimable"
    return f"{_number(row['estimate'])} | {_interval(row)} | {_p(row['p_adjusted'])} | {units} | {_reading(row, negligible)}"


def _direction_tests(plan: ContrastPlan, rows: pd.DataFrame) -> list[str]:
    """Whether the rewrite's and the human pairs' effects differ between the documents' factual values (Wald)."""
    if not plan.directions:
        return []
    tests = rows[(rows["method"] == "wald_hc3") & (rows["moderator"] == plan.treatment)]
    lines = []
    for _, row in tests.iterrows():
        source = "human-edited pairs" if row["analysis"] == "human_pairs" else "rewritten documents"
        lines += [
            "",
            f"Does the effect of {_md(plan.treatment)} ({_md(plan.contrast)}) on the {source} differ by the "
            f"documents' factual {_md(plan.treatment)}? Wald test (HC3 robust): statistic {row['estimate']:.2f}, "
            f"p-value {_p(row['p_value'])} (adjusted {_p(row['p_adjusted'])}).",
        ]
    return lines


def _sources_notes(data: Mapping[str, Any]) -> list[str]:
    """Positivity as one table, refutations, and the estimates' notes."""
    lines = [
        "## Observational estimates: support and checks",
        "",
        "The observational rows read the model's outcome on the documents as they are and adjust for the backdoor "
        "set of the declared graph among the annotated factors; the rewrite rows change only the treatment's words "
        "in the same documents. The confounding gap compares the regression with the rewrite on the documents of "
        "the two compared values; its interval treats the two as independent (approximate: they share documents).",
    ]
    positivity = data.get("positivity", [])
    if positivity:
        lines += [
            "",
            "Strata of the adjustment set without documents in both arms (positivity fails there; overlap.csv "
            "lists every stratum):",
            "",
            "| treatment | contrast | strata | without both arms | which |",
            "|---|---|---|---|---|",
        ]
        for record in positivity:
            shown = "; ".join(_md(stratum) for stratum in record["unsupported"][:5])
            more = len(record["unsupported"]) - 5
            lines.append(
                f"| {_md(record['treatment'])} | {_md(record['contrast'])} | {record['strata']} "
                f"| {len(record['unsupported'])} | {shown}{f' and {more} more' if more > 0 else ''} |"
            )
    refutations = data.get("refutations", [])
    if refutations:
        lines += [
            "",
            "Refutations: a sound estimate falls to about zero under a placebo treatment and barely moves "
            "under a random common cause or on a random subset of the documents.",
            "",
            "| treatment | contrast | method | refuter | estimate | new effect | p-value |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {_md(r['treatment'])} | {_md(r['contrast'])} | {r['method']} | {r['refuter']} | {_number(r['estimate'])} "
            f"| {_number(r['new_effect'])} | {'' if r['p_value'] is None else _p(r['p_value'])} |"
            for r in refutations
        ]
    notes = data.get("warnings", [])
    if notes:
        lines += ["", "Notes:", "", *(f"- {_md(note)}" for note in notes)]
    return lines


def _data_section(data: Mapping[str, Any]) -> list[str]:
    """How many documents each rewrite produced, and why the others were excluded."""
    lines = ["## Rewrites", "", "| factor | to | rewritten | already there | excluded |", "|---|---|---|---|---|"]
    for record in data.get("rewrites", []):
        excluded = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in record["excluded"].items())
        lines.append(
            f"| {_md(record['factor'])} | {_md(record['target'])} | {record['rewritten']} | {record['unchanged']} "
            f"| {excluded or 'none'} |"
        )
    lines += [
        "",
        "A document whose rewrite was excluded has no paired difference, so it does not enter that contrast's "
        "rewrite rows; rewrites.parquet gives the reason for each.",
    ]
    if "pairs" in data:
        pairs = data["pairs"]
        dropped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in pairs["dropped"].items())
        lines += [
            "",
            f"Human-edited pairs: {pairs['kept']} of {pairs['rows']} kept"
            + (f" (dropped: {dropped})" if dropped else "")
            + ".",
        ]
    return lines


_VERDICT_MARK = {"supported": "supported", "contradicted": "**CONTRADICTED**", "inconclusive": "inconclusive"}


def _verdict_section(review: ReviewResult, level: str, *, several: bool) -> list[str]:
    """The pre-registered hypotheses and their verdicts: the first thing a reader sees.

    With `several` outcomes in the run, each effect names the outcome it was judged on.
    """
    verdicts = review.verdicts
    lines = [
        "## Hypotheses",
        "",
        f"Pre-registered claims, judged at {level} with Holm's correction across the {len(verdicts.verdicts)} "
        "hypotheses: a directional claim by a one-sided test against its smallest effect of interest, "
        "an equivalence claim by two one-sided tests (TOST).",
        "",
        f"| id | claim | effect | test | verdict | estimate | {level} CI | p adjusted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for verdict in verdicts.verdicts:
        lines.append(
            f"| {_md(verdict.id)} | {_md(verdict.claim)} | `{_md(verdict.effect)}`"
            + (f" on {_md(verdict.outcome)}" if several else "")
            + f" | {verdict.test} "
            f"| {_VERDICT_MARK[verdict.verdict]} "
            f"| {_number(verdict.estimate)} | {_bounds(verdict.ci_low, verdict.ci_high)} "
            f"| {_p(verdict.p_adjusted)} |"
        )
    lines += ["", *(f"- {_md(verdict.id)}: {_md(verdict.reason)}" for verdict in verdicts.verdicts), ""]
    return lines


_FAIRNESS_WORDS = {
    "flip_rate": "counterfactual flip rate",
    "positive_rate": "positive-decision rate",
    "demographic_parity_difference": "demographic parity difference",
    "disparate_impact_ratio": "disparate impact ratio",
    "true_positive_rate": "true positive rate",
    "equal_opportunity_difference": "equal opportunity difference",
}


def _fairness_section(review: ReviewResult, outcome: NamedOutcome, level: str) -> list[str]:
    """Fairness figures of the decisions, then the surrogates that describe them."""
    frame = review.fairness.to_frame()
    lines = [
        "## Fairness of the decisions",
        "",
        f"A unit's decision is positive when its outcome {_md(outcome.name)} ({outcome.spec.type}) exceeds "
        f"{review.decision_threshold:g}. "
        "The flip rate is the share of units whose decision changes under the intervention; the group figures "
        "compare decision rates across the factor's values in the sampled population.",
        "",
        f"| factor | figure | values | estimate | {level} CI | units | four-fifths rule |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in frame.itertuples():
        where = row.contrast if isinstance(row.contrast, str) else (row.value if isinstance(row.value, str) else "")
        flag = {True: "**violated**", False: "met"}.get(row.four_fifths_violated, "")
        interval = "n/a" if math.isnan(row.ci_low) else f"[{row.ci_low:.3f}, {row.ci_high:.3f}]"
        estimate = format_fairness_estimate(row.metric, row.estimate, row.contrast)
        lines.append(
            f"| {_md(row.factor)} | {_FAIRNESS_WORDS[row.metric]} | {_md(where)} | {estimate} "
            f"| {interval} | {row.n_units} | {flag} |"
        )
    lines += ["", "## Surrogates of the decisions (a description, not a cause)", ""]
    surrogate = review.surrogate
    if surrogate is None:
        return [*lines, f"No surrogate was fitted: {review.surrogate_skipped}"]
    lines += [
        f"A decision tree (depth <= {surrogate.max_depth}) and a logistic regression over the factors, fitted to the "
        f"model's decisions on {surrogate.n_train} units; fidelity is agreement with the model on {surrogate.n_test} "
        f"held-out units. Each {surrogate.caveat}.",
        "",
        f"| surrogate | fidelity | {level} CI |",
        "|---|---|---|",
        *(
            f"| {row.surrogate} | {row.fidelity:.3f} | [{row.ci_low:.3f}, {row.ci_high:.3f}] |"
            for row in surrogate.to_frame().itertuples()
        ),
        "",
        *_fenced(surrogate.rules.rstrip()),
    ]
    return lines


_FLAG_WORDS = {
    "evidence_without_effect": "points at {factor}, whose effect interval covers zero",
    "effect_without_evidence": "gives little weight to {factor}, although its effect is clearly non-zero",
}


def _agreement(value: float) -> str:
    """A rank correlation; n/a where it is undefined (one factor, or no spread to rank)."""
    return "n/a" if math.isnan(value) else f"{value:+.2f}"


def _agreement_interval(low: float, high: float) -> str:
    return "n/a" if math.isnan(low) else f"[{low:+.2f}, {high:+.2f}]"


def _not_run(record: Mapping[str, Any]) -> str:
    return f"Not computed: {_md(record['not_estimable'])}."


def _method_label(row: Any) -> str:
    """An evidence method with its baseline, when it has one: "integrated_gradients (pad)"."""
    return row.method + (f" ({row.baseline})" if isinstance(row.baseline, str) else "")


def _evidence_section(evidence: EvidenceResult, level: str) -> list[str]:
    """Evidence beside the effects, agreement scores, and plainly stated disagreements."""
    links = evidence.links.to_frame()
    agreement = evidence.links.agreement_frame()
    record = evidence.record
    lines = [
        "## Evidence: attention, saliency and probes beside the effects",
        "",
        ("Read on a probability-weighted draw of " if record["weighted_draw"] else "Read on the first ")
        + f"{record['units']} units of the run (their unit_id in manifest.json; integrated gradients: "
        f"{record['baseline']} baseline, {record['steps']} steps"
        + (
            f", largest completeness delta {record['completeness_max_abs_delta']:.2g}"
            if "completeness_max_abs_delta" in record
            else ""
        )
        + ")."
        + (
            " Attention was read with eager attention (the model is configured with "
            f"{_md(repr(record['attn_implementation']))})."
            if record.get("switched_to_eager")
            else ""
        ),
        "Each factor is represented by its total-effect contrast with the largest |effect|; the evidence share is "
        "the factor's part of the method's mean |evidence| across factors.",
        *(
            f"Not linked: {_md(item['method'])}"
            + (f" ({_md(item['baseline'])} baseline)" if item["baseline"] else "")
            + f" has no value for {_md(', '.join(item['factors_without_units']))}: {_md(item['reason'])}."
            for item in record.get("not_linked", [])
        ),
        "",
        f"| method | factor | effect | {level} CI | evidence share | disagreement |",
        "|---|---|---|---|---|---|",
    ]
    for row in links.itertuples():
        flag = _FLAG_WORDS[row.flag].format(factor=_md(row.factor)) if isinstance(row.flag, str) else ""
        lines.append(
            f"| {_method_label(row)} | {_md(row.factor)} | {_number(row.effect)} "
            f"| [{_number(row.ci_low)}, {_number(row.ci_high)}] "
            f"| {row.evidence_share:.2f} | {flag} |"
        )
    lines += [
        "",
        "Does the evidence rank like the interventions? (Kendall's tau across factors; "
        "Spearman across units within a factor; bootstrap CIs)",
        "",
        "| method | scope | statistic | estimate | CI |",
        "|---|---|---|---|---|",
    ]
    for row in agreement.itertuples():
        scope = "factors" if row.scope == "factors" else f"units of {_md(row.factor)}"
        lines.append(
            f"| {_method_label(row)} | {scope} | {row.statistic} | {_agreement(row.estimate)} "
            f"| {_agreement_interval(row.ci_low, row.ci_high)} |"
        )
    flagged = links[links["flag"].notna()]
    lines += [""]
    if len(flagged):
        lines.append("Where the evidence disagrees with the interventions:")
        for row in flagged.itertuples():
            lines.append(
                f"- {_method_label(row)} {_FLAG_WORDS[row.flag].format(factor=_md(row.factor))} "
                f"(effect {_number(row.effect)}, evidence share {row.evidence_share:.2f})."
            )
    else:
        lines.append("No evidence method points at a factor without an effect, or misses a factor with one.")
    if evidence.probes is not None:
        probes = evidence.probes
        best = probes.loc[probes.groupby(["factor", "position"], sort=False)["accuracy"].idxmax()]
        lines += [
            "",
            "Linear probes (cross-validated; best layer per factor and position):",
            "",
            "| factor | position | best layer | accuracy | CI | majority baseline |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {_md(row.factor)} | {_md(row.position)} | {row.layer} | {row.accuracy:.2f} "
            f"| [{row.ci_low:.2f}, {row.ci_high:.2f}] "
            f"| {row.majority_baseline:.2f} |"
            for row in best.itertuples()
        ]
    elif "probe_not_computed" in record:
        lines += ["", f"Linear probes: not computed: {_md(record['probe_not_computed'])}."]
    return lines


_TOP_SITES = 10


def _mediation_section(plan: MediationPlan, record: Mapping[str, Any], frame: pd.DataFrame, level: str) -> list[str]:
    """The total effect and the sites (or edges) that carry most of it, from one patching sweep's rows."""
    headline = frame["method"].isin(["t", "exact"])
    total = frame[headline & (frame["effect"] == "total")]
    indirect = frame[headline & (frame["effect"] == "indirect")]
    top = indirect.reindex(indirect["estimate"].abs().sort_values(ascending=False).index).head(_TOP_SITES)
    if plan.edges:
        return _edges_section(plan, record, total, top, significant_edges(frame), level)
    lines = [
        f"## Inside the model: {_md(plan.treatment)}, do({_md(plan.treated.value)}) vs do({_md(plan.reference.value)})",
        "",
        f"Activation patching ({plan.direction}: the "
        + (
            "reference run receives the treated run's activation"
            if plan.direction == "noise"
            else "treated run receives the reference run's activation"
        )
        + f") on {record['units']} units, {record['sites']} sites x {len(plan.positions)} positions. "
        "The indirect effect through a site is the outcome change when only that site takes its "
        "counterfactual value; p-values are Benjamini-Hochberg adjusted across the sweep.",
        "",
    ]
    if len(total):
        row = total.iloc[0]
        lines += [f"Total effect on these units: {_number(row['estimate'])} {_interval(row)}.", ""]
    if plan.method == "attribution":
        agreement = record.get("rank_agreement", {})
        lines += [
            f"Sites were screened by attribution patching and the top {record.get('verified')} verified "
            f"exactly; rank agreement (Spearman) between the approximation and the exact values: "
            f"{agreement.get('spearman', float('nan')):.2f} over {agreement.get('sites', 0)} sites.",
            "",
        ]
    lines += [
        f"| site | position | indirect effect | {level} CI (t) | p adjusted |",
        "|---|---|---|---|---|",
        *(
            f"| {row['site']} | {_md(row['position'])} | {_number(row['estimate'])} | {_interval(row)} "
            f"| {_p(row['p_adjusted'])} |"
            for _, row in top.iterrows()
        ),
        "",
        f"![layer x position heatmap]({_md(record['heatmap'])})",
    ]
    return lines


def _edges_section(
    plan: MediationPlan,
    record: Mapping[str, Any],
    total: pd.DataFrame,
    top: pd.DataFrame,
    significant: pd.DataFrame,
    level: str,
) -> list[str]:
    """Path patching: the total effect, the strongest edges, and the share of the total the significant edges carry."""
    lines = [
        f"## Paths inside the model: {_md(plan.treatment)}, do({_md(plan.treated.value)}) vs "
        f"do({_md(plan.reference.value)})",
        "",
        f"Path patching ({plan.direction}) on {record['units']} units: each sender's counterfactual change "
        f"reaching only one receiver, every other path frozen; {len(record['senders'])} senders x "
        f"{len(record['receivers'])} receivers x {len(plan.positions)} positions. p-values are Benjamini-Hochberg "
        "adjusted across the edges.",
        "",
    ]
    if len(total):
        row = total.iloc[0]
        lines += [f"Total effect on these units: {_number(row['estimate'])} {_interval(row)}.", ""]
        carried = float(significant["estimate"].sum())
        if len(significant) and row["estimate"] != 0:
            lines += [
                f"The {len(significant)} edge(s) whose interval excludes zero carry {_number(carried)}, "
                f"{carried / row['estimate']:.0%} of the total (edges can overlap: a share is not a partition).",
                "",
            ]
        else:
            lines += ["No edge's interval excludes zero.", ""]
    if plan.method == "attribution":
        agreement = record.get("rank_agreement", {})
        lines += [
            f"Edges were screened by edge attribution patching and the top {record.get('verified')} path patched "
            f"exactly; rank agreement (Spearman): {agreement.get('spearman', float('nan')):.2f} over "
            f"{agreement.get('edges', 0)} edges.",
            "",
        ]
    lines += [
        f"| sender | receiver | position | path effect | {level} CI (t) | p adjusted |",
        "|---|---|---|---|---|---|",
        *(
            f"| {row['site']} | {_md(row['receiver'])} | {_md(row['position'])} | {_number(row['estimate'])} "
            f"| {_interval(row)} | {_p(row['p_adjusted'])} |"
            for _, row in top.iterrows()
        ),
        "",
        f"![edges whose interval excludes zero]({_md(record['heatmap'])})",
    ]
    return lines


_CORRECTION = {"holm": "Holm", "bh": "Benjamini-Hochberg"}
_BOOTSTRAP_WORDS = {
    "symmetric_studentized": "symmetric studentized bootstrap",
    "studentized": "studentized bootstrap",
    "bca": "BCa bootstrap",
    "percentile": "percentile bootstrap",
}


def _outcome_lines(experiment: Experiment) -> list[str]:
    """What each outcome reads: one line for a run of one, a line per named outcome otherwise."""
    if len(experiment.outcomes) == 1:
        return [f"- outcome: {_md(_outcome_words(experiment.outcomes[0].spec))}"]
    return [
        f"- outcomes (each from the same texts{_shared_pass(experiment)}):",
        *(f"  - **{_md(outcome.name)}**: {_md(_outcome_words(outcome.spec))}" for outcome in experiment.outcomes),
    ]


def _shared_pass(experiment: Experiment) -> str:
    """How the outcomes were read: the logit-based ones share one forward pass per text."""
    read = sum(not outcome.generated for outcome in experiment.outcomes)
    return "; those read from logits share one forward pass per text" if read > 1 else ""


def _outcome_words(outcome: OutcomeConfig) -> str:
    answers = outcome.answers or {}
    return _OUTCOME_WORDS[outcome.type].format(
        positive=answers.get("positive"),
        negative=answers.get("negative"),
        target=outcome.target or next(iter(answers), None),
        label=f"label {outcome.label!r}" if outcome.label is not None else f"class index {outcome.label_index}",
        options=", ".join(f"{name} {strings}" for name, strings in (outcome.options or {}).items()),
        values=", ".join(f"{name}={value:g}" for name, value in (outcome.values or {}).items()),
        over="the options" if outcome.options else "the classifier's labels named",
        parse=", ".join(f"{name}: /{pattern}/" for name, pattern in (outcome.parse or {}).items()),
        decoding="greedy"
        if outcome.temperature == 0
        else f"{outcome.samples} samples at temperature {outcome.temperature:g}",
        target_words=f"1 for {outcome.target}, else 0" if outcome.target else "values per option",
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
    return _bounds(row["ci_low"], row["ci_high"])


def _bounds(low: float, high: float) -> str:
    return "n/a" if math.isnan(low) else f"[{_number(low)}, {_number(high)}]"


def _p(value: float) -> str:
    """A p-value in a table: three decimals, "<0.001" below them, blank when missing."""
    return format_p_value(value, ".3f", floor=0.001)


_MARKUP = re.compile(r"<(?=[A-Za-z/!?])|&(?=#|[A-Za-z0-9]+;)|^(\s*)>|[\\|\r\n]")
_MARKUP_ESCAPES = {"<": "&lt;", "&": "&amp;", "\\": "\\\\", "|": "\\|", "\r": " ", "\n": " "}


def _md(value: object) -> str:
    """A user or model string made inert in Markdown, in running text and in table cells alike.

    What a renderer could read as markup is escaped, and nothing else, so the summary stays
    readable in a terminal ("p < 0.05" stays as typed): a `<` that could open an HTML tag or
    comment, an `&` that could start an entity, a `>` that could start a block quote;
    `|` (and so `\\`) is backslash-escaped and line breaks become spaces, so the string stays
    in its cell or list item.
    """
    return _MARKUP.sub(_escape_markup, str(value))


def _escape_markup(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return f"{match.group(1)}&gt;"
    return _MARKUP_ESCAPES[match.group(0)]


def _fenced(text: str) -> list[str]:
    """`text` as a fenced code block whose fence is longer than any run of backticks in it, so it cannot close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text, fence]


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


def _overall_table(experiment: Experiment, frame: pd.DataFrame, level: str, negligible: float) -> list[str]:
    lines = [
        f"| treatment | contrast | estimand | effect | {level} CI (t) | {level} CI (bootstrap) | p adjusted | units | reading |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for plan in experiment.contrasts:
        rows = _rows(frame, plan, "ate")
        head = _headline(rows)
        boot = rows[rows["method"] == "bootstrap"]
        estimand = plan.estimand + (f" (holding {', '.join(map(_md, plan.treated.hold))})" if plan.treated.hold else "")
        lines.append(
            f"| {_md(plan.treatment)} | do({_md(plan.treated.value)}) vs do({_md(plan.reference.value)}) | {estimand} "
            f"| {_number(head['estimate'])} | {_interval(head)} | {_interval(boot.iloc[0]) if len(boot) else ''} "
            f"| {_p(head['p_adjusted'])} | {int(head['n_units'])} | {_reading(head, negligible)} |"
        )
    return lines


def _lead_row(plan: ContrastPlan, frame: pd.DataFrame) -> pd.Series | None:
    """The row that states a contrast's effect: the headline row, or with documents the first source's first estimate.

    The first source is the first the config asks for; the unadjusted difference of means never leads.
    """
    if not plan.sources:
        return _headline(_rows(frame, plan, "ate"))
    rows = frame[
        (frame["treatment"] == plan.treatment)
        & (frame["contrast"] == plan.contrast)
        & (frame["estimand"] == plan.estimand)
    ]
    for source in plan.sources:
        for row in _source_rows(rows, source, plan.treatment, None):
            if row["method"] not in ("naive", "regression_minus_t") and not isinstance(row.get("reason"), str):
                return row
    return None


def _graph_checks(experiment: Experiment, frame: pd.DataFrame, negligible: float) -> list[str]:
    """Compare each total effect with what the declared graph allows."""
    graph = experiment.graph
    lines = ["## Checks against the declared graph", ""]
    for plan in experiment.contrasts:
        if plan.estimand != "total":
            continue
        head = _lead_row(plan, frame)
        name = f"{_md(plan.treatment)} ({_md(plan.contrast)})"
        if head is None:
            lines.append(f"- {name}: not estimable from any of its sources (see the effects above).")
            continue
        reading = _reading(head, negligible)
        has_path = graph.outcome in graph.descendants(plan.treatment)
        outcome = _md(graph.outcome)
        if not has_path and reading in ("increases", "decreases"):
            lines.append(
                f"- **{name}: the graph declares no path to {outcome}, yet the model's outcome changes** "
                f"({_number(head['estimate'])}, {_interval(head)}). The model uses this factor; revise the graph or investigate."
            )
        elif not has_path:
            lines.append(f"- {name}: no declared path to {outcome}, and the run agrees ({reading}, {_interval(head)}).")
        elif reading.startswith(("negligible", "exactly")):
            lines.append(
                f"- {name}: the graph allows an effect on {outcome}, but the model's is {reading} ({_interval(head)})."
            )
        elif reading == "no detectable effect":
            lines.append(
                f"- {name}: the graph allows an effect on {outcome}, but none was detected "
                f"({_interval(head)}); an interval this wide is no evidence of no effect."
            )
        else:
            lines.append(
                f"- {name}: an effect, along a declared path ({_number(head['estimate'])}, {_interval(head)})."
            )
    return lines


def _strata_section(plan: ContrastPlan, frame: pd.DataFrame, level: str, negligible: float, alpha: float) -> list[str]:
    lines = [
        f"## {_md(plan.treatment)}: do({_md(plan.treated.value)}) vs do({_md(plan.reference.value)}), per stratum",
        "",
    ]
    cate = _rows(frame, plan, "cate")
    for moderator in plan.moderators:
        strata = cate[cate["moderator"] == moderator]
        lines += [
            f"| {_md(moderator)} | effect | {level} CI (t) | {level} CI (bootstrap) | p adjusted | units |",
            "|---|---|---|---|---|---|",
        ]
        heads = []
        for stratum in dict.fromkeys(strata["stratum"]):
            rows = strata[strata["stratum"] == stratum]
            head = _headline(rows)
            heads.append(head)
            boot = rows[rows["method"] == "bootstrap"]
            lines.append(
                f"| {_md(stratum)} | {_number(head['estimate'])} | {_interval(head)} "
                f"| {_interval(boot.iloc[0]) if len(boot) else ''} | {_p(head['p_adjusted'])} | {int(head['n_units'])} |"
            )
        test = _rows(frame, plan, "heterogeneity")
        test = test[test["moderator"] == moderator]
        if len(test):
            row = test.iloc[0]
            lines += [
                "",
                f"Does the effect differ across {_md(moderator)}? Wald test (HC3 robust): "
                f"statistic {row['estimate']:.2f}, p-value {_p(row['p_value'])} (adjusted {_p(row['p_adjusted'])})."
                + _negligible_differences(row, pd.DataFrame(heads), negligible, alpha),
            ]
        lines.append("")
    return lines


def _negligible_differences(test: pd.Series, heads: pd.DataFrame, negligible: float, alpha: float) -> str:
    """Context for a heterogeneity test significant at `alpha` whose strata differ by less than `negligible`.

    Many units make a difference of no practical size significant; when the strata's effects all lie
    within the negligible band of each other, or every stratum's interval lies inside the band, the
    test is read as that rather than as a finding. Empty otherwise.
    """
    if negligible <= 0 or not test["p_adjusted"] < alpha:
        return ""
    spread = heads["estimate"].max() - heads["estimate"].min()
    if spread <= negligible:
        why = f"the strata's effects lie within {_number(spread).lstrip('+')} of each other"
    elif ((heads["ci_low"] >= -negligible) & (heads["ci_high"] <= negligible)).all():
        why = "every stratum's interval lies inside it"
    else:
        return ""
    return f" The differences between strata are significant but within the negligible band (±{negligible:g}): {why}."
