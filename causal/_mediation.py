"""Mediation through model sites: total, indirect (through one site) and direct effects with intervals.

Per unit, the indirect effect through a site is the outcome change when only that
site takes its counterfactual activation; the direct effect is the total effect
minus it. Averaging over units gives each site's natural indirect effect with an
interval; Benjamini-Hochberg corrects each family (indirect, direct) across the
whole sweep of sites and positions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from causal._estimate import (
    _check_bootstrap_method,
    _check_level,
    _check_n_bootstrap,
    _check_seed,
    _finite_column,
)
from causal._format import frame_text
from causal._multiple_testing import adjust_p_values
from causal._paired import (
    DEFAULT_BOOTSTRAP_METHOD,
    BootstrapMethod,
    Interval,
    bootstrap_intervals,
    exact_interval,
    t_interval,
)
from causal.errors import EstimationError

MEDIATION_COLUMNS = (
    "sweep",
    "outcome",
    "treatment",
    "contrast",
    "direction",
    "site",
    "component",
    "layer",
    "head",
    "position",
    "receiver",
    "effect",
    "estimate",
    "ci_low",
    "ci_high",
    "std_error",
    "p_value",
    "p_adjusted",
    "n_units",
    "method",
)
SITE_KEYS = ("site", "component", "layer", "head", "position")
"""The columns that name one patched site and position."""
RECEIVER = "receiver"
"""The optional column that makes a site and position an edge: the receivers the site's change reaches (path patching)."""

Effect = Literal["total", "indirect", "direct"]
Source = Literal["patch", "attribution"]


@dataclass(frozen=True)
class MediationEstimate:
    """One row of `mediation.parquet`: an effect through (or around) one site at one position.

    `total` rows have no site. `method` is the interval method, prefixed
    `attribution_` when the per-unit values are first-order approximations. With
    `receiver` set the row is an edge of path patching: the effect of the site's change
    reaching only that receiver ("indirect"), and the rest of the total ("direct").
    `sweep` numbers the run's patching sweeps and `outcome` names the outcome patched (None
    outside a run).
    """

    treatment: str
    contrast: str
    direction: str
    site: str | None
    component: str | None
    layer: int | None
    head: int | None
    position: str | None
    effect: Effect
    estimate: float
    ci_low: float
    ci_high: float
    std_error: float
    p_value: float
    n_units: int
    method: str
    level: float
    p_adjusted: float = math.nan
    receiver: str | None = None
    sweep: int | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class MediationTable:
    """Every mediation estimate of one sweep, BH-adjusted within each effect family."""

    estimates: tuple[MediationEstimate, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per estimate, columns exactly `MEDIATION_COLUMNS`."""
        records = [{column: getattr(e, column) for column in MEDIATION_COLUMNS} for e in self.estimates]
        frame = pd.DataFrame(records, columns=list(MEDIATION_COLUMNS))
        return frame.astype({"sweep": "Int64", "layer": "Int64", "head": "Int64"})

    def summary(self) -> str:
        """Plain text: the total effect and the sites with the largest indirect effects."""
        frame = self.to_frame()
        total = frame[frame["effect"] == "total"]
        indirect = frame[frame["effect"] == "indirect"]
        top = indirect.reindex(indirect["estimate"].abs().sort_values(ascending=False).index).head(10)
        return f"{len(frame)} mediation estimates\n{frame_text(total)}\nlargest indirect effects:\n{frame_text(top)}"

    def __str__(self) -> str:
        return self.summary()

    @classmethod
    def concat(cls, tables: Sequence[MediationTable]) -> MediationTable:
        return cls(tuple(estimate for table in tables for estimate in table.estimates))

    def numbered(self, sweep: int, outcome: str | None = None) -> MediationTable:
        """The same estimates labelled as sweep `sweep` of a run (so sweeps of one contrast stay apart), on `outcome`."""
        return MediationTable(
            tuple(dataclasses.replace(estimate, sweep=sweep, outcome=outcome) for estimate in self.estimates)
        )


def estimate_mediation(
    per_unit: pd.DataFrame,
    *,
    treatment: str,
    contrast: str,
    direction: str,
    exact: bool = False,
    level: float = 0.95,
    n_bootstrap: int = 2000,
    bootstrap_method: BootstrapMethod = DEFAULT_BOOTSTRAP_METHOD,
    seed: int = 0,
    source: Source = "patch",
) -> MediationTable:
    """Total, indirect and direct effects per site and position, with intervals across units.

    `per_unit` has one row per (unit, site, position): columns "unit", the site keys
    "site", "component", "layer", "head", "position", "total" (the unit's total
    effect) and "indirect" (its effect through the site), plus "weight" when `exact`;
    with a "receiver" column, one row per (unit, edge) and the rows are path effects.
    Every site (or edge) must cover the same units. The table is not modified. `bootstrap_method`
    says how the "bootstrap" rows' intervals are read off the resamples.
    """
    level, n_bootstrap, seed = _check_level(level), _check_n_bootstrap(n_bootstrap), _check_seed(seed)
    bootstrap_method = _check_bootstrap_method(bootstrap_method)
    if source not in ("patch", "attribution"):
        raise EstimationError(f"source must be 'patch' or 'attribution'; got {source!r}")
    units, totals, weights, keys, indirect = _read(per_unit, exact=exact)
    context = dict(treatment=treatment, contrast=contrast, direction=direction, level=level)
    prefix = "attribution_" if source == "attribution" else ""
    empty_site = dict.fromkeys((*SITE_KEYS, RECEIVER))
    rows = [
        MediationEstimate(
            **context, **empty_site, effect="total", n_units=units.size, method=prefix + method, **_fields(total)
        )
        for method, (total,) in _intervals(
            totals[None, :], weights, exact, level, n_bootstrap, bootstrap_method, seed
        ).items()
    ]
    for effect, values in (("indirect", indirect), ("direct", totals[None, :] - indirect)):
        intervals = _intervals(values, weights, exact, level, n_bootstrap, bootstrap_method, seed)
        for method, per_site in intervals.items():
            rows += [
                MediationEstimate(
                    **context, **key, effect=effect, n_units=units.size, method=prefix + method, **_fields(interval)
                )
                for key, interval in zip(keys, per_site, strict=True)
            ]
    return MediationTable(tuple(_corrected(rows)))


def _intervals(
    values: np.ndarray,
    weights: np.ndarray | None,
    exact: bool,
    level: float,
    n_bootstrap: int,
    bootstrap_method: BootstrapMethod,
    seed: int,
) -> dict[str, list[Interval]]:
    """Intervals of each row's mean: exact weighted means, or t and bootstrap (shared unit draws)."""
    if exact:
        return {"exact": [exact_interval(row, weights) for row in values]}
    return {
        "t": [t_interval(row, level=level) for row in values],
        "bootstrap": bootstrap_intervals(
            values,
            level=level,
            n_bootstrap=n_bootstrap,
            rng=np.random.default_rng(seed),
            bootstrap_method=bootstrap_method,
        ),
    }


def _fields(interval: Interval) -> dict[str, float]:
    return dict(
        estimate=interval.estimate,
        ci_low=interval.ci_low,
        ci_high=interval.ci_high,
        std_error=interval.std_error,
        p_value=interval.p_value,
    )


def _corrected(rows: list[MediationEstimate]) -> list[MediationEstimate]:
    """BH within each effect family (total, indirect, direct) across all sites and positions."""
    adjusted = np.full(len(rows), np.nan)
    for effect in ("total", "indirect", "direct"):
        members = [i for i, row in enumerate(rows) if row.effect == effect]
        adjusted[members] = adjust_p_values([rows[i].p_value for i in members], method="bh")
    return [dataclasses.replace(row, p_adjusted=float(p)) for row, p in zip(rows, adjusted, strict=True)]


def _read(per_unit: pd.DataFrame, *, exact: bool):
    """Units, their totals and weights, the site keys, and the (sites, units) indirect matrix."""
    if not isinstance(per_unit, pd.DataFrame) or per_unit.empty:
        raise EstimationError("per_unit must be a non-empty DataFrame with one row per (unit, site, position)")
    required = ["unit", *SITE_KEYS, "total", "indirect", *(["weight"] if exact else [])]
    missing = [column for column in required if column not in per_unit.columns]
    if missing:
        raise EstimationError(f"per_unit must have column(s) {missing}; it has {list(per_unit.columns)}")
    totals_by_unit = pd.Series(_finite_column(per_unit, "total"), index=per_unit["unit"].to_numpy())
    spread = totals_by_unit.groupby(level=0).agg(np.ptp)
    if (spread > 1e-9).any():
        raise EstimationError(f"each unit must have one total effect; unit {spread.idxmax()} has several")
    frame = per_unit.assign(indirect=_finite_column(per_unit, "indirect"), _key=_key_labels(per_unit))
    matrix = frame.pivot_table(index="_key", columns="unit", values="indirect", aggfunc="first", sort=False)
    if matrix.isna().any().any():
        key = matrix.index[matrix.isna().any(axis=1)][0]
        raise EstimationError(f"every site must cover every unit; {key} is missing some units")
    units = matrix.columns.to_numpy()
    totals = totals_by_unit.groupby(level=0).first().loc[units].to_numpy(dtype=np.float64)
    weights = None
    if exact:
        weights = frame.groupby("unit")["weight"].first().loc[units].to_numpy(dtype=np.float64)
    first = frame.drop_duplicates("_key").set_index("_key").loc[matrix.index]
    keys = [
        {
            "site": row.site,
            "component": row.component,
            "layer": _int_or_none(row.layer),
            "head": _int_or_none(row.head),
            "position": row.position,
            RECEIVER: getattr(row, RECEIVER, None),
        }
        for row in first.itertuples()
    ]
    return units, totals, weights, keys, matrix.to_numpy(dtype=np.float64)


def _key_labels(per_unit: pd.DataFrame) -> pd.Series:
    labels = per_unit["site"].astype(str) + "@" + per_unit["position"].astype(str)
    return labels + "->" + per_unit[RECEIVER].astype(str) if RECEIVER in per_unit.columns else labels


def _int_or_none(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)
