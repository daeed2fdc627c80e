"""Train the built-in demo models that ship in experiments/demo/models/, or retrain them and compare.

The models are `builtin:triage-demo`, `builtin:triage-demo-fair` (experiments/demo/_model.py)
and the chat model `builtin:decisions-chat` (experiments/demo/_chat_model.py).

    python scripts/train_demo_models.py                  # (re)write experiments/demo/models/<name>/
    python scripts/train_demo_models.py --check          # retrain into a temporary folder, compare fingerprints
    python scripts/train_demo_models.py decisions-chat   # only the models named

Training is deterministic (one CPU thread, deterministic algorithms, fixed seeds), so a
retrain on a machine like this one gives the shipped fingerprint. `--check` exits 1 when a
retrained model's fingerprint differs from the shipped one's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from experiments.config import BUILTIN_PREFIX, model_folder
from experiments.demo._chat_model import train_chat_model
from experiments.demo._model import CHAT_NAME, RULES, train_demo_model
from interventions import ModelAdapter, ModelSpec

TRAINERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    **{name: partial(train_demo_model, name) for name in RULES},
    CHAT_NAME: train_chat_model,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"models to train (default: all of {', '.join(TRAINERS)})"
    )
    parser.add_argument("--check", action="store_true", help="retrain into a temporary folder and compare")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in TRAINERS]
    if unknown:  # checked here: argparse refuses an empty list against choices before Python 3.12
        parser.error(f"unknown model {unknown[0]!r}; the built-in models are {', '.join(TRAINERS)}")
    differ = False
    with tempfile.TemporaryDirectory(prefix="paribus-demo-") as scratch:
        for name in args.names or TRAINERS:
            train = TRAINERS[name]
            shipped = model_folder(name)
            folder = Path(scratch) / name
            clock = time.perf_counter()
            record = train(folder)
            seconds = time.perf_counter() - clock
            print(
                f"{BUILTIN_PREFIX}{name}: fingerprint {record['model_fingerprint']}, trained in {seconds:.1f} s, "
                f"held-out mean |error| {record['held_out_mean_abs_error_log_odds']:.4f} log-odds"
            )
            if args.check:
                expected = ModelAdapter.load(ModelSpec(str(shipped), device="cpu")).fingerprint()
                if expected != record["model_fingerprint"]:
                    differ = True
                    print(f"  differs from the shipped fingerprint {expected}")
            else:
                shutil.rmtree(shipped, ignore_errors=True)
                shutil.copytree(folder, shipped)
                for path in shipped.iterdir():
                    path.chmod(0o644)  # safetensors writes 0600; installed package data must be readable by all
                print(f"  written to {shipped}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
