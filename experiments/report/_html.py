"""`report.html`: one self-contained HTML document built from a run folder's files alone.

Stage: report. May import causal, experiments.errors, the config and run stages.

Everything the report shows is read back from the folder (config, manifest, tables,
heatmaps), so `paribus report RUN_DIR` rebuilds it without the model. Images are inline
PNGs, CSS is inline, and there are no scripts. Every string from the model, the config or
the data goes through Jinja's autoescaping; `report.redact_texts` replaces each example
text by its sha256 prefix, for reports that leave a secure environment.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causal import format_fairness_estimate, format_p_value
from experiments.config import ContrastPlan, Experiment, load_experiment
from experiments.errors import RunFolderError
from experiments.run import read_outcomes, read_table, utc_now, verify_checksums

REPORT_FILE = "report.html"
_HEADLINE = ("t", "exact")
_TOP_SITES = 10
_EXAMPLE_UNITS = 3
_OBSERVATIONAL = (
    (
        "refutations.csv",
        "Refutations",
        "Each refuter perturbs the data or the graph; a sound estimate should survive it.",
    ),
    (
        "overlap.csv",
        "Overlap",
        "Covariate overlap between treatment groups: estimates rely on units with comparable peers.",
    ),
    ("dropped.csv", "Dropped rows", "Rows of the data set left out of the estimate, and why."),
)


@dataclass(frozen=True)
class _Table:
    """A table for the template: column titles and rows of already formatted cells."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def write_report(folder: Path, *, redact_texts: bool | None = None) -> Path:
    """Write `report.html` into a finished run folder and return its path.

    `redact_texts` overrides the config's `report.redact_texts` (the folder's files stay as
    the run wrote them, so their checksums hold).
    """
    path = folder / REPORT_FILE
    path.write_text(render_report(folder, redact_texts=redact_texts), encoding="utf-8")
    return path


def render_report(folder: Path, *, redact_texts: bool | None = None) -> str:
    """The report of the run in `folder`, as HTML text; RunFolderError when the folder is not a finished run folder."""
    from jinja2 import Environment, StrictUndefined

    for name in ("config.yaml", "manifest.json", "effects.csv"):
        if not (folder / name).is_file():
            raise RunFolderError(
                f"{str(folder)!r} is not a finished run folder: {name} is missing; pass a folder that `paribus run` wrote"
            )
    verify_checksums(folder)
    experiment = load_experiment(folder / "config.yaml")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    redacted = experiment.config.report.redact_texts if redact_texts is None else redact_texts
    effects = read_table(folder, "effects.csv")
    environment = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(
        (files("experiments.report") / "templates" / "report.html.j2").read_text(encoding="utf-8")
    )
    level = f"{experiment.config.inference.level:.0%}"
    return template.render(
        name=experiment.config.name,
        generated_at=utc_now(),
        manifest=manifest,
        level=level,
        redacted=redacted,
        verdicts=_verdicts(folder),
        graph_png=_png(_draw_graph, experiment),
        forest_png=_png(_draw_forest, experiment, _by_outcome(experiment, effects), level),
        effects=_effects_table(effects),
        cate=_cate_plots(experiment, _by_outcome(experiment, effects), level),
        mediation=_mediation(folder, manifest),
        evidence=_evidence(folder, redacted, manifest.get("evidence") or {}),
        examples=_examples(folder, experiment, redacted),
        fairness=_fairness(folder),
        decision_threshold=experiment.decision_threshold,
        surrogate=_surrogate(folder, manifest),
        observational=[
            (title, about, _frame_table(frame))
            for name, title, about in _OBSERVATIONAL
            if (frame := _optional_csv(folder / name)) is not None
        ],
        provenance=_provenance(manifest),
        packages=sorted((manifest.get("packages") or {}).items()),
        config_text=(folder / "config.yaml").read_text(encoding="utf-8"),
    )


def redact(text: str) -> str:
    """A text's stand-in in a redacted report: the first 12 hex digits of its sha256."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _plain(text: str) -> str:
    """A label for matplotlib, drawn as typed: a `$` would otherwise start mathtext."""
    return text.replace("$", r"\$")


def _optional_csv(path: Path) -> pd.DataFrame | None:
    return read_table(path.parent, path.name) if path.is_file() else None


_P_COLUMNS = ("p_value", "p_adjusted")


def _cell(value: Any, column: str = "") -> str:
    """A table cell: numbers to four significant digits (p-values never as 0), missing values blank."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return format_p_value(float(value)) if column in _P_COLUMNS else f"{value:.4g}"
    return str(value)


def _frame_table(frame: pd.DataFrame) -> _Table:
    columns = tuple(map(str, frame.columns))
    return _Table(
        columns,
        tuple(
            tuple(_cell(value, column) for value, column in zip(row, columns, strict=True))
            for row in frame.itertuples(index=False)
        ),
    )


def _interval(low: float, high: float) -> str:
    return "" if math.isnan(low) else f"[{_cell(low)}, {_cell(high)}]"


def _verdicts(folder: Path) -> list[dict[str, str]] | None:
    frame = _optional_csv(folder / "hypotheses.csv")
    if frame is None:
        return None
    return [
        {**{key: _cell(value, key) for key, value in row.items()}, "interval": _interval(row["ci_low"], row["ci_high"])}
        for row in frame.to_dict("records")
    ]


def _fairness(folder: Path) -> list[dict[str, str]] | None:
    """fairness.csv rows formatted; `four_fifths` is "violated", "met" or blank (also for an undefined ratio)."""
    frame = _optional_csv(folder / "fairness.csv")
    if frame is None:
        return None
    rows = []
    for row in frame.to_dict("records"):
        flag = row["four_fifths_violated"]
        rows.append(
            {
                **{key: _cell(value) for key, value in row.items()},
                "metric": str(row["metric"]).replace("_", " "),
                "estimate": format_fairness_estimate(row["metric"], row["estimate"], row["contrast"], ".4g"),
                "interval": _interval(row["ci_low"], row["ci_high"]),
                "four_fifths": "" if not isinstance(flag, (bool, np.bool_)) else ("violated" if flag else "met"),
            }
        )
    return rows


def _effects_table(effects: pd.DataFrame) -> _Table:
    """Every estimate of effects.csv, one row each."""
    return _frame_table(effects.drop(columns=["std_error"]))


def _png(draw: Callable[..., None], *args: Any) -> str:
    """`draw(figure, *args)` on a fresh matplotlib Figure (no pyplot state), returned as base64 PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure, *args)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _draw_graph(figure: Any, experiment: Experiment) -> None:
    """The declared causal graph, layered by topological generation (config order within a layer)."""
    import networkx as nx

    graph = experiment.graph.to_networkx()
    outcome = experiment.graph.outcome
    order = {node: index for index, node in enumerate((*experiment.graph.factors, outcome))}
    layers = [sorted(nodes, key=order.__getitem__) for nodes in nx.topological_generations(graph)]
    positions = {
        node: (float(x), (len(nodes) - 1) / 2 - y) for x, nodes in enumerate(layers) for y, node in enumerate(nodes)
    }
    axes = figure.add_subplot()
    colours = ["#f2c14e" if node == outcome else "#9ecae1" for node in graph.nodes]
    nx.draw_networkx(
        graph,
        positions,
        ax=axes,
        labels={node: _plain(str(node)) for node in graph.nodes},
        node_color=colours,
        node_size=1600,
        font_size=9,
        arrowsize=16,
        edge_color="#555555",
        connectionstyle="arc3,rad=0.12",
    )  # curved, so an edge never runs through a node in its way
    axes.margins(0.12)
    axes.set_axis_off()
    axes.set_title(f"declared graph: {len(graph.edges)} edges; yellow = outcome", fontsize=9)


def _headline(effects: pd.DataFrame, analysis: str) -> pd.DataFrame:
    return effects[(effects["analysis"] == analysis) & effects["method"].isin(_HEADLINE)]


Panel = tuple[str | None, pd.DataFrame, float]
"""One outcome's effect rows, drawn on axes of their own: (its name when the run has several, rows, negligible band)."""


def _by_outcome(experiment: Experiment, effects: pd.DataFrame) -> list[Panel]:
    """A panel per outcome: scales differ (log-odds, probabilities), so each gets its own axis and band."""
    several = len(experiment.outcomes) > 1
    return [
        (
            outcome.name if several else None,
            effects[effects["outcome"] == outcome.name],
            experiment.negligible(outcome.name),
        )
        for outcome in experiment.outcomes
    ]


def _draw_forest(figure: Any, experiment: Experiment, panels: list[Panel], level: str) -> None:
    """Each average effect with its interval, one panel per outcome; the zero line and the negligible band.

    With documents, every source a contrast asks for has its rows, in the config's order;
    a row that could not be estimated keeps its line, labelled so.
    """
    drawn = [(name, _forest_rows(experiment, effects).iloc[::-1], negligible) for name, effects, negligible in panels]
    rows = drawn[0][1]
    labels = [
        _plain(
            f"{row.treatment}: {row.contrast}"
            + ("" if row.estimand == "total" else f" ({row.estimand})")
            + ("" if experiment.data is None else f", {_FOREST_SOURCE.get(row.analysis, row.analysis)} {row.method}")
            + ("" if isinstance(row.reason, float) or row.reason is None else " (not estimable)")
        )
        for row in rows.itertuples()
    ]
    figure.set_size_inches(4.0 + 3.5 * len(drawn), 1.2 + 0.45 * len(rows))
    for index, (axes, (name, rows_of, negligible)) in enumerate(
        zip(figure.subplots(1, len(drawn), sharey=True, squeeze=False)[0], drawn, strict=True)
    ):
        _intervals(axes, np.arange(len(rows_of)), rows_of, negligible)
        if index == 0:
            axes.set_yticks(np.arange(len(rows)), labels, fontsize=8)
        _band(axes, negligible)
        axes.set_xlabel(f"average effect on {_plain(name or 'the outcome')}, {level} CI", fontsize=8)


def _band(axes: Any, negligible: float) -> None:
    """The negligible band, shaded and named in a legend, when there is one."""
    if negligible > 0:
        axes.axvspan(-negligible, negligible, color="#dddddd", zorder=0, label=f"negligible (±{negligible:g})")
        axes.legend(fontsize=7, loc="best")


_SWEEP_COLUMNS = ["site", "position", "estimate", "ci_low", "ci_high", "p_adjusted"]
_EDGE_COLUMNS = ["site", "receiver", "position", "estimate", "ci_low", "ci_high", "p_adjusted"]
_FOREST_SOURCE = {"ate": "rewrite", "observational": "observational", "human_pairs": "human pairs"}


def _forest_rows(experiment: Experiment, effects: pd.DataFrame) -> pd.DataFrame:
    """The average-effect rows the forest draws: the headline rows, or each data-mode source's overall rows."""
    if experiment.data is None:
        return _headline(effects, "ate")
    overall = effects[effects["moderator"].isna() & (effects["method"] != "naive")]
    chosen = []
    for plan in experiment.contrasts:
        mine = overall[_plan_rows(overall, plan)]
        for source in plan.sources:
            analysis = {"rewrite": "ate", "human_pairs": "human_pairs"}.get(source, "observational")
            rows = mine[mine["analysis"] == analysis]
            chosen.append(rows if analysis == "observational" else rows[rows["method"].isin(_HEADLINE)])
    return pd.concat(chosen) if chosen else effects.iloc[:0]


_FINDING, _NEGLIGIBLE, _UNSETTLED = "#c0392b", "#999999", "#34495e"


def _intervals(axes: Any, places: np.ndarray, rows: pd.DataFrame, negligible: float) -> None:
    """Points with horizontal interval bars, coloured as summary.md reads them.

    Red (a finding) where the interval excludes zero, grey where it lies inside ±`negligible`
    (even if it excludes zero: a negligible effect is not a finding), dark otherwise.
    """
    low = (rows["estimate"] - rows["ci_low"]).fillna(0).clip(lower=0).to_numpy()
    high = (rows["ci_high"] - rows["estimate"]).fillna(0).clip(lower=0).to_numpy()
    inside = (
        (rows["ci_low"] >= -negligible) & (rows["ci_high"] <= negligible) & ((negligible > 0) | (rows["estimate"] == 0))
    ).to_numpy()
    excludes = ((rows["ci_low"] > 0) | (rows["ci_high"] < 0)).to_numpy() & ~inside
    for mask, colour in ((excludes, _FINDING), (inside, _NEGLIGIBLE), (~excludes & ~inside, _UNSETTLED)):
        axes.errorbar(
            rows["estimate"].to_numpy()[mask],
            places[mask],
            xerr=[low[mask], high[mask]],
            fmt="o",
            color=colour,
            capsize=3,
            markersize=4,
        )
    axes.axvline(0, color="#888888", linewidth=0.8)
    axes.set_ylim(-0.6, len(places) - 0.4)
    axes.tick_params(labelsize=8)


def _cate_plots(experiment: Experiment, panels: list[Panel], level: str) -> list[tuple[str, str]]:
    """One plot per effect and moderator (a panel per outcome): the effect in each stratum beside the average."""
    plots = []
    for plan in experiment.contrasts:
        for moderator in plan.moderators:
            drawn = []
            for name, effects, negligible in panels:
                strata = _headline(effects, "cate")
                rows = strata[_plan_rows(strata, plan) & (strata["moderator"] == moderator)]
                average = _headline(effects, "ate")
                drawn.append((name, rows, average[_plan_rows(average, plan)], negligible))
            if all(rows.empty for _, rows, _, _ in drawn):
                continue
            title = f"{plan.treatment}: {plan.contrast} ({plan.estimand}) by {moderator}"
            plots.append((title, _png(_draw_strata, drawn, moderator, level)))
    return plots


def _plan_rows(frame: pd.DataFrame, plan: ContrastPlan) -> pd.Series:
    return (
        (frame["treatment"] == plan.treatment)
        & (frame["contrast"] == plan.contrast)
        & (frame["estimand"] == plan.estimand)
    )


def _draw_strata(
    figure: Any, panels: list[tuple[str | None, pd.DataFrame, pd.DataFrame, float]], moderator: str, level: str
) -> None:
    """Each stratum's effect with its interval, one panel per outcome, the average effect dashed."""
    height = max(len(rows) for _, rows, _, _ in panels)
    figure.set_size_inches(2.5 + 3.5 * len(panels), 1.2 + 0.45 * height)
    for index, (axes, (name, rows, average, negligible)) in enumerate(
        zip(figure.subplots(1, len(panels), sharey=True, squeeze=False)[0], panels, strict=True)
    ):
        _intervals(axes, np.arange(len(rows)), rows, negligible)
        if index == 0:
            axes.set_yticks(
                np.arange(len(rows)), [_plain(f"{moderator} = {stratum}") for stratum in rows["stratum"]], fontsize=8
            )
        if len(average):
            axes.axvline(
                float(average["estimate"].iloc[0]), color="#2980b9", linestyle="--", linewidth=1, label="average effect"
            )
            axes.legend(fontsize=7, loc="best")
        where = "" if name is None else f" on {_plain(name)}"
        axes.set_xlabel(f"effect within the stratum{where}, {level} CI", fontsize=8)


def _mediation(folder: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Each patching sweep: its heatmap (the run's PNG) and the sites carrying most of the effect."""
    path = folder / "mediation.parquet"
    frame = pd.read_parquet(path) if path.is_file() else None
    sweeps = []
    for index, record in enumerate(manifest.get("mediation", [])):
        title = f"{record.get('treatment')}: {record.get('contrast')} ({record.get('direction')})"
        if frame is None or "not_estimable" in record:
            sweeps.append({"title": title, "png": None, "sites": None, "why": record.get("not_estimable")})
            continue
        picture = folder / str(record.get("heatmap", ""))
        mine = frame[(frame["sweep"] == index) & (frame["effect"] == "indirect") & frame["method"].isin(_HEADLINE)]
        top = mine.reindex(mine["estimate"].abs().sort_values(ascending=False).index).head(_TOP_SITES)
        sweeps.append(
            {
                "title": title,
                "why": None,
                "png": base64.b64encode(picture.read_bytes()).decode("ascii") if picture.is_file() else None,
                "sites": _frame_table(top[_SWEEP_COLUMNS if "senders" not in record else _EDGE_COLUMNS]),
            }
        )
    return sweeps


def _evidence(folder: Path, redact_texts: bool, record: dict[str, Any]) -> dict[str, Any] | None:
    """Evidence beside the effects, agreement with the interventions, and coloured token views.

    `record` is the manifest's evidence record: it says why evidence or probes were not computed.
    """
    links, agreement = _optional_csv(folder / "evidence_links.csv"), _optional_csv(folder / "evidence_agreement.csv")
    if links is None and agreement is None:
        if "not_estimable" not in record:
            return None
        return {
            "why": record["not_estimable"],
            "probes_why": None,
            "agreement": None,
            "links": None,
            "probes": None,
            "token_views": [],
        }
    probes = _optional_csv(folder / "probes.csv")
    tokens = folder / "token_view.parquet"
    return {
        "why": None,
        "probes_why": record.get("probe_not_computed"),
        "agreement": None if agreement is None else _frame_table(agreement),
        "links": None if links is None else _frame_table(links),
        "probes": None if probes is None else _frame_table(probes),
        "token_views": _token_views(pd.read_parquet(tokens), redact_texts) if tokens.is_file() else [],
    }


def _token_views(view: pd.DataFrame, redact_texts: bool) -> list[dict[str, Any]]:
    """Per method, unit and arm: tokens with a background whose opacity is |value| over the unit's largest.

    Red is positive, blue negative; slot tokens are underlined. Redacted, a line is its text's hash.
    """
    methods = []
    for (method, baseline), rows in view.groupby(["method", view["baseline"].fillna("")], sort=False):
        lines = []
        for unit, unit_rows in rows.groupby("unit", sort=False):
            scale = float(unit_rows["value"].abs().max())
            for arm, arm_rows in unit_rows.groupby("arm", sort=False):
                tokens = list(zip(arm_rows["token"], arm_rows["value"], arm_rows["factor"], strict=True))
                lines.append(
                    {
                        "label": f"unit {unit}, {arm}",
                        "hash": redact("".join(str(token) for token, _, _ in tokens)) if redact_texts else None,
                        "tokens": []
                        if redact_texts
                        else [_token(token, value, factor, scale) for token, value, factor in tokens],
                    }
                )
        methods.append({"title": method if not baseline else f"{method} ({baseline} baseline)", "lines": lines})
    return methods


def _token(token: str, value: float, factor: Any, scale: float) -> dict[str, Any]:
    strength = abs(value) / scale if scale > 0 else 0.0
    colour = "192, 57, 43" if value >= 0 else "41, 128, 185"
    return {
        "text": str(token),
        "style": f"background-color: rgba({colour}, {strength:.3f})",
        "title": f"{value:.4g}" + (f" ({factor})" if isinstance(factor, str) else ""),
        "slot": isinstance(factor, str),
    }


def _examples(folder: Path, experiment: Experiment, redact_texts: bool) -> list[dict[str, Any]]:
    """The first units' prompts in the factual world and in the first contrast's two arms, with every outcome's value."""
    path = folder / "outcomes.parquet"
    if not path.is_file() or not experiment.contrasts:
        return []
    outcomes = read_outcomes(folder)
    plan = experiment.contrasts[0]
    arms = ("factual", plan.treated.label, plan.reference.label)
    shown = outcomes[outcomes["arm"].isin(arms)]
    several = outcomes["outcome"].nunique() > 1
    examples = []
    for unit in list(dict.fromkeys(shown["unit_id"]))[:_EXAMPLE_UNITS]:
        rows = shown[shown["unit_id"] == unit]
        listed = []
        for arm in arms:
            of_arm = rows[rows["arm"] == arm]
            if of_arm.empty:
                continue
            text = of_arm["text"].iloc[0]
            values = [
                f"{name}: {_cell(float(value))}" if several else _cell(float(value))
                for name, value in zip(of_arm["outcome"], of_arm["value"], strict=True)
            ]
            listed.append((arm, redact(text) if redact_texts else text, "; ".join(values)))
        examples.append({"unit": str(unit), "arms": listed})
    return examples


def _surrogate(folder: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Fidelities, rules and coefficients; or why no surrogate was fitted; None when fairness was not reviewed."""
    fidelity = _optional_csv(folder / "surrogate.csv")
    skipped = (manifest.get("review") or {}).get("surrogate_skipped")
    if fidelity is None:
        return None if skipped is None else {"skipped": skipped}
    coefficients = _optional_csv(folder / "surrogate_coefficients.csv")
    rules = folder / "surrogate_rules.txt"
    return {
        "fidelity": _frame_table(fidelity),
        "coefficients": None if coefficients is None else _frame_table(coefficients),
        "rules": rules.read_text(encoding="utf-8") if rules.is_file() else "",
        "skipped": None,
    }


_PROVENANCE = (
    ("status", "status"),
    ("config hash", "config_hash"),
    ("model", "model_id"),
    ("model path", "model_path"),
    ("model fingerprint", "model_fingerprint"),
    ("device", "device"),
    ("dtype", "dtype"),
    ("seed", "seed"),
    ("sampling", "sampling_mode"),
    ("units", "n_units"),
    ("started", "started_at"),
    ("finished", "finished_at"),
    ("seconds", "seconds"),
    ("python", "python"),
    ("platform", "platform"),
)


def _provenance(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """The manifest fields that identify what was run, where and when."""
    rows = [(label, _cell(manifest[key])) for label, key in _PROVENANCE if manifest.get(key) is not None]
    command = manifest.get("command")
    if isinstance(command, Iterable) and not isinstance(command, str):
        rows.append(("command", " ".join(map(str, command))))
    return rows
