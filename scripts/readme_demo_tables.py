"""Print the README's demo block from a run folder of the demo, or check or rewrite the README's copy.

    paribus run experiments/examples/triage.yaml --out RUN
    python scripts/readme_demo_tables.py RUN                      # print the block
    python scripts/readme_demo_tables.py RUN --check README.md    # exit 1 with a diff when the README differs
    python scripts/readme_demo_tables.py RUN --write README.md    # replace the README's block

The block is the run's effects table, built by the code that writes the `## Effects` table
of its summary.md, and the model's fingerprint as its manifest records it. In the README it
sits between the lines `<!-- demo-table:begin -->` and `<!-- demo-table:end -->`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

import pandas as pd

from experiments.config import load_experiment
from experiments.report._summary import _overall_table

BEGIN = "<!-- demo-table:begin -->"
END = "<!-- demo-table:end -->"


def demo_block(run: Path) -> str:
    """The effects table and the fingerprint line of the run folder `run`, as the README shows them."""
    experiment = load_experiment(run / "config.yaml")
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    level = f"{experiment.config.inference.level:.0%}"
    table = _overall_table(experiment, pd.read_csv(run / "effects.csv"), level, experiment.negligible(None))
    fingerprint = (
        f"Model fingerprint (`model_fingerprint` in the run's manifest.json: sha256 of the weights and the "
        f"tokenizer vocabulary): `{manifest['model_fingerprint']}`"
    )
    return "\n".join([*table, "", fingerprint]) + "\n"


def readme_block(text: str) -> str:
    """The lines between the markers of a README's text; ValueError when the markers are missing."""
    start, end = text.find(BEGIN + "\n"), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {BEGIN} ... {END} block")
    return text[start + len(BEGIN) + 1 : end]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder of experiments/examples/triage.yaml")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", type=Path, metavar="README", help="exit 1 with a diff when its block differs")
    action.add_argument("--write", type=Path, metavar="README", help="replace its block")
    args = parser.parse_args(argv)
    block = demo_block(args.run)
    readme = args.check or args.write
    if readme is None:
        print(block, end="")
        return 0
    text = readme.read_text(encoding="utf-8")
    try:
        current = readme_block(text)
    except ValueError as error:
        print(f"{readme}: {error}", file=sys.stderr)
        return 1
    if args.write:
        readme.write_text(text.replace(BEGIN + "\n" + current, BEGIN + "\n" + block, 1), encoding="utf-8")
        return 0
    if current == block:
        print(f"{readme}: the demo block matches {args.run}")
        return 0
    diff = difflib.unified_diff(
        current.splitlines(keepends=True), block.splitlines(keepends=True), f"{readme} (demo block)", str(args.run)
    )
    print(f"{readme}: the demo block differs from {args.run}:", "".join(diff), sep="\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
