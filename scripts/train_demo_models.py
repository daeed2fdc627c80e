"""Train the built-in demo models that ship in experiments/demo/models/, or retrain them and compare.

    python scripts/train_demo_models.py           # (re)write experiments/demo/models/<name>/
    python scripts/train_demo_models.py --check   # retrain into a temporary folder, compare fingerprints

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
from pathlib import Path

from experiments.demo._model import BUILTIN_PREFIX, RULES, model_folder, train_demo_model
from interventions import ModelAdapter, ModelSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="retrain into a temporary folder and compare")
    args = parser.parse_args(argv)
    differ = False
    with tempfile.TemporaryDirectory(prefix="paribus-demo-") as scratch:
        for name in RULES:
            shipped = model_folder(name)
            folder = Path(scratch) / name
            clock = time.perf_counter()
            record = train_demo_model(name, folder)
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
