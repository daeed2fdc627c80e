"""Counterfactual documents: each document rewritten to every arm a contrast or patching sweep needs.

Stage: run. May import interventions and the config stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from experiments.config import Arm, Experiment
from interventions import RenderedText, Rewrite, RewriteError, Template

REWRITE_COLUMNS = ("doc_id", "factor", "source", "target", "status", "reason", "original_spans", "rewritten_spans")


@dataclass(frozen=True)
class Counterfactuals:
    """Every document's text in each arm, and how each rewrite went.

    `texts[(factor, target)]` holds one text per document (None where the rewrite was
    excluded); `rewrites` keeps the Rewrite objects for patching and evidence through their
    spans (for a document already at the target, the identity rewrite holding its located
    forms; None where the forms could not be located).
    """

    texts: dict[tuple[str, str], list[str | None]]
    rewrites: dict[tuple[str, str], list[Rewrite | None]]
    table: pd.DataFrame


def rewrite_documents(experiment: Experiment, documents: pd.DataFrame) -> Counterfactuals:
    """Each document in every arm the rewritten contrasts and patching sweeps need; exclusions kept with their reason."""
    plan = experiment.data
    rewritten = [contrast for contrast in experiment.contrasts if contrast.interventional]
    needed = dict.fromkeys(
        (two.treatment, arm.value)
        for two in (*rewritten, *experiment.mediation)
        for arm in (two.treated, two.reference)
    )
    texts, rewrites, rows = {}, {}, []
    for factor, target in needed:
        rules = plan.rules[factor]
        arm_texts: list[str | None] = []
        arm_rewrites: list[Rewrite | None] = []
        for doc_id, text, source in zip(documents["doc_id"], documents["text"], documents[factor]):
            row = {
                "doc_id": doc_id,
                "factor": factor,
                "source": source,
                "target": target,
                "status": "unchanged",
                "reason": None,
                "original_spans": [],
                "rewritten_spans": [],
            }
            try:
                rewrite = rules.rewrite(text, source=source, target=target)
            except RewriteError as error:
                rewrite = None
                if source != target:  # a document already at the target is its own text there
                    row.update(status="excluded", reason=error.reason)
            else:
                if source != target:
                    row.update(
                        status="rewritten",
                        original_spans=_spans(rewrite.original, factor),
                        rewritten_spans=_spans(rewrite.rewritten, factor),
                    )
            arm_rewrites.append(rewrite)
            arm_texts.append(text if source == target else (None if rewrite is None else rewrite.rewritten.text))
            rows.append(row)
        texts[(factor, target)] = arm_texts
        rewrites[(factor, target)] = arm_rewrites
    return Counterfactuals(texts, rewrites, pd.DataFrame(rows, columns=list(REWRITE_COLUMNS)))


def rewritable_to_both(counterfactuals: Counterfactuals, factor: str, treated: str, reference: str) -> np.ndarray:
    """Per document, whether it has a text at both values of `factor` (rewritten, or already there)."""
    return np.array(
        [
            first is not None and second is not None
            for first, second in zip(
                counterfactuals.texts[(factor, treated)], counterfactuals.texts[(factor, reference)], strict=True
            )
        ],
        dtype=bool,
    )


def rewritten_pair(
    treated: RenderedText, reference: RenderedText, factor: str, suffix: str = ""
) -> tuple[RenderedText, RenderedText, Template]:
    """Two texts of one document that differ only inside `factor`'s spans, as renders of one template.

    The template's literals are the text between the spans (equal in both texts, as
    every rewrite is verified), so `interventions.align` pairs their token positions;
    `suffix` is appended to both, as the model reads them.
    """
    spans = treated.spans[factor]
    cuts = [0, *(edge for span in spans for edge in span), len(treated.text)]
    literals = [treated.text[cuts[i] : cuts[i + 1]] for i in range(0, len(cuts), 2)]
    literals[-1] += suffix
    escaped = [literal.replace("{", "{{").replace("}", "}}") for literal in literals]
    template = Template.parse(("{" + factor + "}").join(escaped))
    return (
        RenderedText(treated.text + suffix, {factor: spans}),
        RenderedText(reference.text + suffix, {factor: reference.spans[factor]}),
        template,
    )


def rewrite_counts(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Per factor and target: documents rewritten, already at the target, and excluded by reason."""
    records = []
    for (factor, target), group in table.groupby(["factor", "target"], sort=False):
        status = group["status"].value_counts()
        records.append(
            {
                "factor": factor,
                "target": target,
                "rewritten": int(status.get("rewritten", 0)),
                "unchanged": int(status.get("unchanged", 0)),
                "excluded": {str(k): int(v) for k, v in group["reason"].value_counts(sort=False).items()},
            }
        )
    return records


def arm_frame(documents: pd.DataFrame, counterfactuals: Counterfactuals) -> pd.DataFrame:
    """One row per (document, arm) with a text: the factual document, then each available counterfactual."""
    frames = [pd.DataFrame({"doc_id": documents["doc_id"], "arm": "factual", "text": documents["text"]})]
    for (factor, target), texts in counterfactuals.texts.items():
        frame = pd.DataFrame({"doc_id": documents["doc_id"], "arm": Arm(factor, target).label, "text": texts})
        frames.append(frame[frame["text"].notna()])
    return pd.concat(frames, ignore_index=True)


def _spans(text: RenderedText, factor: str) -> list[list[int]]:
    return [list(span) for span in text.spans.get(factor, ())]
