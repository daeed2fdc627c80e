"""Linear probes: how well each factor's value can be read from the residual stream, per layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

from interventions._adapter import ModelAdapter
from interventions._encoded import EncodedTexts, encode_texts
from interventions._template import RenderedText
from interventions.errors import InterventionError

ProbePosition = Literal["factor", "decision"]
PROBE_COLUMNS = (
    "factor",
    "position",
    "layer",
    "accuracy",
    "ci_low",
    "ci_high",
    "majority_baseline",
    "above_baseline",
    "n_units",
    "n_classes",
)

_POSITIONS = ("factor", "decision")


@dataclass(frozen=True)
class ProbeEvidence:
    """Cross-validated probe accuracy per factor, position and layer (`PROBE_COLUMNS`).

    `layer` 0 is the embedding output and layer l the output of block l (the model's
    `hidden_states`). `ci_low`/`ci_high` are the Clopper-Pearson interval of the accuracy
    at `level`; `above_baseline` says the interval lies above `majority_baseline`, the
    accuracy of always guessing the most frequent value.
    """

    table: pd.DataFrame
    n_folds: int
    seed: int
    level: float

    def to_frame(self) -> pd.DataFrame:
        """The probe table, a copy."""
        return self.table.copy()

    def summary(self) -> str:
        """Per factor and position, the best layer's accuracy against the majority baseline."""
        groups = self.table.groupby(["factor", "position"], sort=False)["accuracy"]
        best = self.table.loc[groups.idxmax()]
        return "\n".join(
            f"{row.factor} at the {row.position} position: best layer {row.layer}, accuracy "
            f"{row.accuracy:.3g} [{row.ci_low:.3g}, {row.ci_high:.3g}] vs majority baseline "
            f"{row.majority_baseline:.3g}" + ("" if row.above_baseline else " (not above it)")
            for row in best.itertuples()
        )


def probe_factors(
    adapter: ModelAdapter,
    texts: Sequence[RenderedText],
    values: Mapping[str, Sequence[str]],
    *,
    positions: Sequence[ProbePosition] = _POSITIONS,
    n_folds: int = 5,
    seed: int = 0,
    level: float = 0.95,
    batch_size: int = 32,
) -> ProbeEvidence:
    """Decode each factor's value from the hidden states with a logistic-regression probe.

    `values[factor][i]` is the factor's value in text i. Position "factor" reads the last
    token of the factor's last slot occurrence (every text must show the factor), "decision"
    the position the outcome is read at. Accuracy is out-of-fold over stratified k folds
    (shuffled with `seed`) of a standardised logistic regression, so a probe that only
    memorises scores at chance.
    """
    from scipy.stats import binomtest

    factors = list(values)
    _check_options(values, len(texts), positions, n_folds, level, batch_size)
    shown = factors if "factor" in positions else []
    encoded = encode_texts(adapter, texts, shown)
    reads = {("decision", None): np.array(encoded.decision)} if "decision" in positions else {}
    for factor in shown:
        last_tokens = [max(found) for found in encoded.factor_positions[factor]]
        reads[("factor", factor)] = np.array(last_tokens)
    features = _hidden_states_at(adapter, encoded, reads, batch_size)
    records = []
    for factor in factors:
        labels = np.asarray(values[factor], dtype=object)
        classes, counts = np.unique(labels, return_counts=True)
        for position in positions:
            stacked = features[(position, factor if position == "factor" else None)]
            for layer, layer_features in enumerate(stacked):
                correct = int(_out_of_fold_correct(layer_features, labels, n_folds, seed).sum())
                interval = binomtest(correct, len(labels)).proportion_ci(confidence_level=level, method="exact")
                baseline = counts.max() / len(labels)
                records.append(
                    (
                        factor,
                        position,
                        layer,
                        correct / len(labels),
                        interval.low,
                        interval.high,
                        baseline,
                        interval.low > baseline,
                        len(labels),
                        len(classes),
                    )
                )
    return ProbeEvidence(
        table=pd.DataFrame(records, columns=list(PROBE_COLUMNS)),
        n_folds=n_folds,
        seed=seed,
        level=level,
    )


def _check_options(
    values: Mapping[str, Sequence[str]],
    n_texts: int,
    positions: Sequence[str],
    n_folds: int,
    level: float,
    batch_size: int,
) -> None:
    """Raise InterventionError for a bad option or a factor that stratified folds cannot split."""
    if isinstance(positions, str) or not positions or set(positions) - set(_POSITIONS):
        raise InterventionError(f"positions must be a non-empty list drawn from {list(_POSITIONS)}, got {positions!r}")
    if not isinstance(n_folds, int) or n_folds < 2:
        raise InterventionError(f"n_folds must be an int >= 2, got {n_folds!r}")
    if not 0 < level < 1:
        raise InterventionError(f"level must be between 0 and 1, got {level!r}")
    if batch_size < 1:
        raise InterventionError(f"batch_size must be at least 1, got {batch_size}")
    if not values:
        raise InterventionError("values is empty; give each factor's value per text")
    for factor, labels in values.items():
        if isinstance(labels, str) or len(labels) != n_texts:
            raise InterventionError(f"values[{factor!r}] must list one value per text ({n_texts}), got {labels!r:.80}")
        classes, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
        if len(classes) < 2 or counts.min() < n_folds:
            raise InterventionError(
                f"factor {factor!r} has value counts {dict(zip(classes, counts.tolist()))}; a "
                f"stratified {n_folds}-fold probe needs at least two values, each in at least "
                f"{n_folds} texts; use more units or fewer folds"
            )


def _hidden_states_at(
    adapter: ModelAdapter,
    encoded: EncodedTexts,
    reads: Mapping[tuple[str, str | None], np.ndarray],
    batch_size: int,
) -> dict[tuple[str, str | None], np.ndarray]:
    """For each read (a position per text), the hidden states there: (layers, texts, width)."""
    found: dict[tuple[str, str | None], np.ndarray] = {}
    with torch.inference_mode():
        for rows, input_ids, attention_mask in encoded.batches(adapter, batch_size):
            states = adapter.model(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
            ).hidden_states
            stacked = torch.stack(states, dim=1)  # (batch, layers, seq, width)
            batch = torch.arange(len(rows), device=stacked.device)
            for key, where in reads.items():
                if key not in found:
                    found[key] = np.empty((stacked.shape[1], len(encoded), stacked.shape[-1]), dtype=np.float64)
                at = torch.as_tensor(where[rows], device=stacked.device)
                found[key][:, rows] = stacked[batch, :, at].double().cpu().numpy().swapaxes(0, 1)
    return found


def _out_of_fold_correct(features: np.ndarray, labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Whether each text's value is predicted right by a probe fitted without it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return cross_val_predict(probe, features, labels.astype(str), cv=folds) == labels.astype(str)
