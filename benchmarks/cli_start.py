"""Benchmark: how long `paribus --help` and `paribus validate` take, against `python -c "import torch"`.

Each command runs as a fresh subprocess, as from a shell, --repeats times after one untimed
warm-up round. The rounds interleave the two commands with a baseline `import torch`, so load
from other processes on shared cores falls on all three alike. Printed: the median wall time
of each and its ratio to the baseline; the same for CPU time (user + system), which waiting for
a busy core does not inflate; and whether each command meets the goal of under 1.5 s wall time
(it can only by not importing torch).

    python benchmarks/cli_start.py [--repeats 5] [--config experiments/examples/triage.yaml]

(From the repository root; the commands run what the `paribus` console script runs.)
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 1.5
BASELINE = "import torch (baseline)"
_PARIBUS = "import sys; from experiments.cli import app; sys.exit(app())"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config", default="experiments/examples/triage.yaml", help="relative to the repository root")
    args = parser.parse_args()
    commands = {
        BASELINE: [sys.executable, "-c", "import torch"],
        "paribus --help": [sys.executable, "-c", _PARIBUS, "--help"],
        f"paribus validate {args.config}": [sys.executable, "-c", _PARIBUS, "validate", args.config],
    }
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for round_ in range(args.repeats + 1):
        for label, command in commands.items():
            sample = _time(label, command)
            if round_:
                samples[label].append(sample)
    wall = {label: statistics.median(s[0] for s in values) for label, values in samples.items()}
    cpu = {label: statistics.median(s[1] for s in values) for label, values in samples.items()}
    width = max(map(len, commands))
    print(f"medians of {args.repeats} runs each (after one warm-up round), rounds interleaved")
    print(f"{'command':<{width}}  {'wall s':>6}  {'/ torch':>7}  {'CPU s':>6}  {'/ torch':>7}  wall < {GOAL_S} s")
    for label in commands:
        goal = "" if label == BASELINE else ("met" if wall[label] < GOAL_S else "NOT met")
        print(
            f"{label:<{width}}  {wall[label]:6.2f}  {wall[label] / wall[BASELINE]:7.2f}  "
            f"{cpu[label]:6.2f}  {cpu[label] / cpu[BASELINE]:7.2f}  {goal}"
        )


def _time(label: str, command: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of `command` run in the repository root; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{label} exited {result.returncode}:\n{result.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


if __name__ == "__main__":
    main()
