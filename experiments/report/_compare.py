"""`paribus compare`: two run folders' effects side by side, with CIs of their differences.

Stage: report. May import causal, experiments.errors and the config stage.

Runs that drew the same units (same factors, prompt, sampling and seed) are compared unit by
unit, which cancels the units' own variation; other runs are compared as independent samples.
Everything is read from the run folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from causal import ComparisonTable, compare_effects, compare_verdicts
from experiments.config import Experiment, NamedOutcome, load_experiment
from experiments.errors import RunFolderError
from experiments.report._summary import _md, _p
from experiments.run import read_table, verify_checksums


@dataclass(frozen=True)
class RunComparison:
    """Run B against run A: matched effects with differences, changed verdicts, and how units were paired.

    `refused` lists the outcomes both runs name but define differently (another type, other
    answers or options): their estimates are not subtracted.
    """

    run_a: Path
    run_b: Path
    effects: ComparisonTable
    verdict_changes: pd.DataFrame | None
    paired: bool
    refused: tuple[str, ...] = ()

    def to_frame(self) -> pd.DataFrame:
        """One row per matched estimate (`causal.COMPARISON_COLUMNS`)."""
        return self.effects.to_frame()

    def summary(self) -> str:
        """Markdown: the headline differences, the changed verdicts, then the unmatched estimates."""
        level = f"{self.effects.level:.0%}"
        frame = self.to_frame()
        average = frame[frame["analysis"] == "ate"]
        lines = [
            f"# Comparison: B = `{_md(self.run_b)}` minus A = `{_md(self.run_a)}`",
            "",
            (
                "Both runs drew the same units: each average effect's difference is a paired t-interval over units."
                if self.paired
                else "The runs drew different units: differences are compared as independent samples."
            ),
            (
                f"{len(frame)} matched estimates, {len(self.effects.significant)} significant at {level} "
                f"({self.effects.correction}-adjusted across all of them)."
            ),
            "",
            *(
                f"Not compared: the outcome {_md(name)} is defined differently in the two runs "
                "(see each run's config.yaml); a difference of different measurements means nothing."
                for name in self.refused
            ),
            "",
            "## Average effects",
            "",
            f"| outcome | treatment | contrast | estimand | A | B | B - A | {level} CI | p adjusted | pairing "
            "| significant |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *(
                f"| {_md(row.outcome or '')} | {_md(row.treatment)} | {_md(row.contrast)} | {row.estimand} "
                f"| {row.estimate_a:+.4g} "
                f"| {row.estimate_b:+.4g} "
                f"| {row.difference:+.4g} | [{row.ci_low:+.4g}, {row.ci_high:+.4g}] | {_p(row.p_adjusted)} | {row.pairing} "
                f"| {'**yes**' if row.significant else 'no'} |"
                for row in average.itertuples()
            ),
            "",
            "Per-stratum and heterogeneity differences are in comparison.csv.",
        ]
        if self.verdict_changes is not None:
            lines += ["", "## Hypotheses whose verdict changed", ""]
            if self.verdict_changes.empty:
                lines.append("None: every hypothesis has the same verdict in both runs.")
            else:
                lines += ["| id | claim | effect | A | B |", "|---|---|---|---|---|"]
                lines += [
                    f"| {_md(row.id)} | {_md(row.claim)} | `{_md(row.effect)}` | {row.verdict_a or 'not judged'} | "
                    f"{row.verdict_b or 'not judged'} |"
                    for row in self.verdict_changes.itertuples()
                ]
        unmatched = self.effects.unmatched_frame()
        if len(unmatched):
            lines += ["", "## Estimates in one run only", ""]
            lines += [
                f"- run {row.side}: {row.analysis} {row.estimand} {_md(row.treatment)}[{_md(row.contrast)}]"
                + (f", {_md(row.moderator)} = {_md(row.stratum)}" if isinstance(row.moderator, str) else "")
                for row in unmatched.itertuples()
            ]
        return "\n".join(lines) + "\n"


def compare_runs(run_a: Path, run_b: Path) -> RunComparison:
    """Compare run B's estimates with run A's, at run A's interval level and correction."""
    experiment_a, experiment_b = _experiment(run_a), _experiment(run_b)
    inference = experiment_a.config.inference
    paired = _same_units(run_a, run_b)
    refused = _differently_defined(experiment_a, experiment_b)
    effects_a, effects_b = (read_table(run, "effects.csv") for run in (run_a, run_b))
    effects = compare_effects(
        effects_a[~effects_a["outcome"].isin(refused)],
        effects_b[~effects_b["outcome"].isin(refused)],
        paired=_paired_differences(run_a, experiment_a, run_b, experiment_b) if paired else None,
        level=inference.level,
        correction=inference.correction,
    )
    hypotheses = [run / "hypotheses.csv" for run in (run_a, run_b)]
    both = all(path.is_file() for path in hypotheses)
    changes = compare_verdicts(*(read_table(path.parent, path.name) for path in hypotheses)) if both else None
    return RunComparison(
        run_a=run_a, run_b=run_b, effects=effects, verdict_changes=changes, paired=paired, refused=refused
    )


def _differently_defined(experiment_a: Experiment, experiment_b: Experiment) -> tuple[str, ...]:
    """The outcome names both runs use for different definitions (type, answers, options, parsing...)."""
    definitions_b = {outcome.name: _definition(outcome) for outcome in experiment_b.outcomes}
    return tuple(
        outcome.name
        for outcome in experiment_a.outcomes
        if outcome.name in definitions_b and definitions_b[outcome.name] != _definition(outcome)
    )


def _definition(outcome: NamedOutcome) -> dict[str, Any]:
    """What an outcome measures, whatever it is called."""
    return outcome.spec.model_dump(exclude={"name"})


def write_comparison(comparison: RunComparison, out_dir: Path) -> Path:
    """comparison.csv, unmatched.csv, verdict_changes.csv (when both runs have hypotheses) and comparison.md."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise RunFolderError(f"output folder {str(out_dir)!r} already exists and is not empty; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    comparison.to_frame().to_csv(out_dir / "comparison.csv", index=False)
    comparison.effects.unmatched_frame().to_csv(out_dir / "unmatched.csv", index=False)
    if comparison.verdict_changes is not None:
        comparison.verdict_changes.to_csv(out_dir / "verdict_changes.csv", index=False)
    (out_dir / "comparison.md").write_text(comparison.summary(), encoding="utf-8")
    return out_dir


def _experiment(run: Path) -> Experiment:
    """The run's experiment; RunFolderError when `run` is not a finished run folder."""
    for name in ("config.yaml", "effects.csv"):
        if not (run / name).is_file():
            raise RunFolderError(
                f"{str(run)!r} is not a finished run folder: {name} is missing; pass folders that `paribus run` wrote"
            )
    verify_checksums(run)
    if "outcome" not in read_table(run, "effects.csv").columns:
        raise RunFolderError(
            f"{str(run)!r} was written by an earlier Paribus whose effects.csv names no outcome; run its config "
            "again with this version to compare it"
        )
    return load_experiment(run / "config.yaml")


def _same_units(run_a: Path, run_b: Path) -> bool:
    """Whether both runs drew identical units: same ids, weights, template variants, factor values and forms."""
    paths = [run / name for run in (run_a, run_b) for name in ("units.parquet", "outcomes.parquet")]
    if not all(path.is_file() for path in paths):
        return False
    units_a, units_b = pd.read_parquet(run_a / "units.parquet"), pd.read_parquet(run_b / "units.parquet")
    return units_a.equals(units_b)


def _paired_differences(
    run_a: Path, experiment_a: Experiment, run_b: Path, experiment_b: Experiment
) -> pd.DataFrame | None:
    """Per outcome, unit and contrast estimated in both runs: the unit's difference in run A and in run B."""
    frames = []
    plans_b = {(plan.estimand, plan.treatment, plan.contrast): plan for plan in experiment_b.contrasts}
    plans_a = {(plan.estimand, plan.treatment, plan.contrast): plan for plan in experiment_a.contrasts}
    outcomes_a, outcomes_b = (pd.read_parquet(run / "outcomes.parquet") for run in (run_a, run_b))
    for name in set(outcomes_a["outcome"]) & set(outcomes_b["outcome"]):
        by_arm_a, by_arm_b = _by_arm(outcomes_a, name), _by_arm(outcomes_b, name)
        for key, plan in plans_a.items():
            other = plans_b.get(key)
            if other is None or other.treated.hold != plan.treated.hold:
                continue
            frames.append(
                pd.DataFrame(
                    {
                        "outcome": name,
                        "estimand": plan.estimand,
                        "treatment": plan.treatment,
                        "contrast": plan.contrast,
                        "difference_a": by_arm_a[plan.treated.label] - by_arm_a[plan.reference.label],
                        "difference_b": by_arm_b[other.treated.label] - by_arm_b[other.reference.label],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else None


def _by_arm(outcomes: pd.DataFrame, name: str) -> pd.DataFrame:
    """One outcome's values, a row per unit and a column per arm."""
    rows = outcomes[outcomes["outcome"] == name]
    return rows.pivot(index="unit_id", columns="arm", values="value").sort_index()
