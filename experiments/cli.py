"""The `paribus` command line: validate and run experiment configs, rebuild reports, compare and verify runs.

Stage: pipeline. May import every stage.

Exit status: 0 done; 1 an internal error; 2 any user error (config, data, model files,
sizes, paths, run folders), one line and no traceback; 3 a contradicted hypothesis under
--fail-on-hypotheses; 4 a run folder that does not verify.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from experiments.config import Experiment, load_experiment, shortened
from experiments.errors import RunFolderError

app = typer.Typer(
    name="paribus",
    help="Causal counterfactual analysis of language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_err = Console(stderr=True)
_out = Console()

ConfigArg = Annotated[Path, typer.Argument(help="Experiment config (YAML).", show_default=False)]


_PATH_ERRORS = (PermissionError, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError)
"""OSErrors about a path the user named (a folder that cannot be written, a file where a folder must be)."""


@contextmanager
def _user_errors(run_folder: Path | None = None, *, failure: str = "run failed") -> Iterator[None]:
    """Turn bad input into a one-line message and exit status 2 (1, after `failure`, for a RunError).

    With `run_folder`, the message says the folder keeps what this run wrote only when files
    appeared or changed there while the block ran.
    """
    from experiments.errors import RunError

    before = _stamps(run_folder)
    try:
        yield
    except (ValueError, *_PATH_ERRORS) as error:
        kept = ""
        if run_folder is not None and _stamps(run_folder).items() - before.items():
            kept = f"\nwhat this run wrote so far is kept in {escape(str(run_folder))}"
        _err.print(
            f"[bold red]error:[/bold red] {escape(shortened(str(error)))}{kept}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None
    except RunError as error:
        _err.print(f"[bold red]{failure}:[/bold red] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _stamps(folder: Path | None) -> dict[str, tuple[int, int]]:
    """(modification time, size) of every file under `folder`; empty when it is not a folder."""
    if folder is None or not folder.is_dir():
        return {}
    stamps = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except OSError:  # removed while we looked
                continue
            stamps[path] = (stat.st_mtime_ns, stat.st_size)
    return stamps


def _load(config: Path, overrides: dict[str, dict[str, Any]]) -> Experiment:
    with _user_errors():
        return load_experiment(config, overrides=overrides)


def _check_model(experiment: Experiment) -> str:
    """Resolve model.id (a built-in id to its folder) and check its tokenizer against the outcome; say what was checked."""
    from experiments.config import check_model
    from experiments.demo import resolve_model_path

    with _user_errors():
        return check_model(experiment.config, resolve_model_path(experiment.model_spec.path))


def _check_run_folder(folder: Path) -> None:
    """The run folder exists as a folder or can be made: its nearest existing ancestor is a writable folder."""
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"run folder {folder} is a file; give a folder (--out)")
    ancestor = folder
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RunFolderError(f"run folder {folder} cannot be made: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RunFolderError(f"run folder {folder} cannot be written: {ancestor} is not writable by this user")


@app.command()
def validate(config: ConfigArg) -> None:
    """Check a config, its data and its model's tokenizer (no weights); exit status 2 and the problem when invalid."""
    experiment = _load(config, {})
    graph = experiment.graph
    source = f"{len(experiment.templates)} template(s)"
    support: list[str] = []
    if experiment.data is not None:
        with _user_errors():
            source, support = _documents_words(experiment)
    model = _check_model(experiment)
    _out.print(
        f"[green]valid[/green]: {escape(experiment.config.name)}: {len(graph.factors)} factors, "
        f"{len(graph.edges)} edges into/among them, {source}, "
        f"{len(experiment.contrasts)} contrasts over {len(experiment.arms)} arms, "
        f"{len(experiment.mediation)} patching sweep(s), evidence {'on' if experiment.config.evidence else 'off'}, "
        f"{len(experiment.hypotheses)} hypotheses, fairness {'on' if experiment.config.fairness else 'off'}",
        highlight=False,
        soft_wrap=True,
    )
    for line in support:
        _out.print(escape(line), highlight=False, soft_wrap=True)
    _out.print(escape(model), highlight=False, soft_wrap=True)


def _documents_words(experiment: Experiment) -> tuple[str, list[str]]:
    """Data mode: documents and human pairs kept (and why others would be dropped); per contrast, each source's support."""
    from experiments.config import load_documents, load_pairs
    from experiments.run import rewrite_documents, source_support

    plan = experiment.data
    values = {name: tuple(factor.values) for name, factor in experiment.config.factors.items()}
    documents = load_documents(plan.config, plan.path, values)
    words = [
        f"{len(documents.frame)} of {documents.n_rows} documents kept{_left_out_words(documents.left_out)}"
        f"{_dropped_words(documents.counts())}",
        f"rewrite rules for {', '.join(plan.rules) or 'no factor'}",
    ]
    pairs = None
    if plan.pairs is not None:
        pairs = load_pairs(plan.pairs, documents.frame, values, left_out=documents.left_out)
        words.append(f"{len(pairs.frame)} of {pairs.n_rows} human pairs kept{_dropped_words(pairs.counts())}")
    counterfactuals = rewrite_documents(experiment, documents.frame)
    support = [
        f"  {row.treatment} ({row.contrast}), {row.source}: {row.detail}"
        + ("" if row.estimable else " -> NOT ESTIMABLE (the run will say so in effects.csv)")
        for row in source_support(experiment, documents.frame, counterfactuals, None if pairs is None else pairs.frame)
    ]
    return ", ".join(words), support


def _left_out_words(left_out: tuple[str, ...]) -> str:
    return f" ({len(left_out)} left out by data.where or data.limit)" if left_out else ""


def _dropped_words(counts: dict[str, int]) -> str:
    return f" (dropped: {', '.join(f'{n} {reason}' for reason, n in counts.items())})" if counts else ""


@app.command()
def run(
    config: ConfigArg,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/NAME-TIMESTAMP).")] = None,
    units: Annotated[int | None, typer.Option(help="Override sampling.units.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override sampling.seed.")] = None,
    device: Annotated[str | None, typer.Option(help="Override model.device: auto, cpu, cuda, cuda:N.")] = None,
    fail_on_hypotheses: Annotated[
        bool, typer.Option(help="Exit with status 3 when a pre-registered hypothesis is contradicted.")
    ] = False,
    executor: Annotated[str | None, typer.Option(help="Override executor.type: local or ray.")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Resume the unfinished run in this folder, skipping the outcomes it holds.")
    ] = None,
) -> None:
    """Run an experiment and write its run folder (config, manifest, tables, summary.md, report.html).

    The config, its documents, its model's tokenizer and the folder are checked before the folder is made.
    """
    overrides: dict[str, dict[str, Any]] = {}
    if units is not None:
        overrides.setdefault("sampling", {})["units"] = units
    if seed is not None:
        overrides.setdefault("sampling", {})["seed"] = seed
    if device is not None:
        overrides.setdefault("model", {})["device"] = device
    if executor is not None:
        overrides.setdefault("executor", {})["type"] = executor
    if resume is not None and out is not None and resume != out:
        _err.print(
            f"[bold red]error:[/bold red] --out {escape(str(out))} and --resume {escape(str(resume))} "
            "name different folders; a resumed run writes into the folder it resumes, give one of them",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    experiment = _load(config, overrides)
    folder = resume or out or Path("runs") / f"{experiment.config.name}-{datetime.now():%Y%m%d-%H%M%S}"
    with _user_errors():
        if experiment.data is not None:
            _documents_words(experiment)
    _check_model(experiment)
    with _user_errors():
        _check_run_folder(folder)
    from transformers.utils import logging as transformers_logging

    from experiments._pipeline import run_experiment

    transformers_logging.disable_progress_bar()
    with _user_errors(folder), _progress() as progress:
        result = run_experiment(
            experiment, out_dir=folder, progress=progress, command=sys.argv, resume=resume is not None
        )
    typer.echo((result.folder / "summary.md").read_text(encoding="utf-8"))
    if result.lock_taken_over is not None:
        _err.print(
            f"took over the stale lock of {escape(result.lock_taken_over.describe())}, a process that is no longer "
            "running (recorded in manifest.json as lock_taken_over)",
            highlight=False,
            soft_wrap=True,
        )
    _out.print(f"run folder: {escape(str(result.folder))}", highlight=False, soft_wrap=True)
    contradicted = result.manifest["review"]["contradicted"]
    if fail_on_hypotheses and contradicted:
        _err.print(
            f"[bold red]contradicted hypotheses:[/bold red] {escape(', '.join(contradicted))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(3)


RunArg = Annotated[Path, typer.Argument(help="A run folder written by `paribus run`.", show_default=False)]


@app.command()
def report(
    run_dir: RunArg,
    redact_texts: Annotated[
        bool,
        typer.Option(
            "--redact-texts",
            help="Show each example text as its sha256 prefix, whatever the run's report.redact_texts says.",
        ),
    ] = False,
) -> None:
    """Rebuild report.html of a run folder from its files (no model needed)."""
    from experiments.report import write_report

    with _user_errors(failure="cannot build the report"):
        path = write_report(run_dir, redact_texts=True if redact_texts else None)
    _out.print(f"report: {escape(str(path))}", highlight=False, soft_wrap=True)


@app.command()
def compare(
    run_a: RunArg,
    run_b: RunArg,
    out: Annotated[Path | None, typer.Option(help="Also write comparison.csv, comparison.md and friends here.")] = None,
) -> None:
    """Compare run B's effects with run A's: differences B - A with CIs, and changed verdicts."""
    from experiments.report import compare_runs, write_comparison

    with _user_errors(failure="cannot compare"):
        comparison = compare_runs(run_a, run_b)
        if out is not None:
            write_comparison(comparison, out)
    typer.echo(comparison.summary())
    if out is not None:
        _out.print(f"comparison folder: {escape(str(out))}", highlight=False, soft_wrap=True)


@app.command()
def verify(
    run_dir: RunArg,
    sample: Annotated[
        int,
        typer.Option(
            min=1, help="Stored values (unit, arm, outcome read from logits) to evaluate again with the model."
        ),
    ] = 20,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the sample of outcomes evaluated again.")] = 0,
) -> None:
    """Check a finished run folder: every file against its checksum, and a seeded sample of outcomes re-evaluated.

    Exit status 0 when the folder verifies; 4 when it does not (a changed file, or outcomes the
    model no longer gives: the summary names them and the largest difference); 2 when the
    folder is not a run folder or cannot be read.
    """
    from transformers.utils import logging as transformers_logging

    from experiments._verify import verify_run

    transformers_logging.disable_progress_bar()
    with _user_errors(failure="cannot verify"), _progress() as progress:
        verification = verify_run(run_dir, sample=sample, seed=seed, progress=progress)
    typer.echo(verification.summary())
    if not verification.ok:
        raise typer.Exit(4)


@contextmanager
def _progress() -> Iterator[Any]:
    """A rich progress bar per stage of long work, on stderr so stdout stays the summary."""
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=_err,
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    with bars:
        yield report


if __name__ == "__main__":
    app()
