"""Benchmark: where the time of one `estimate_observational` call goes, by table size.

A simulated confounded table (age drives insurance and the outcome) is estimated with
the default options, then piece by piece: identification and estimates alone (no
refuters), each method alone (no refuters, with the effects on the treated and the
reference documents), and each refuter alone on each refuted method. dowhy is imported
(about 4 s) before any timing. Printed per table size: wall and CPU seconds of each
piece and its ratio to the default call; the refuter pieces add up to about the default
call plus one estimates-only call per extra piece.

    python benchmarks/observational.py [--rows 500 2000 8000] [--simulations 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from causal import estimate_observational
from graphs import CausalGraph

GRAPH = CausalGraph.from_edges(
    ["age", "sex", "insurance"],
    "decision",
    ["age -> insurance", "age -> decision", "insurance -> decision", "sex -> decision"],
)


def _table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.choice(["young", "middle", "old"], size=rows)
    insurance = np.where(rng.random(rows) < np.where(age == "old", 0.7, 0.2), "none", "private")
    outcome = 2.0 * (age == "old") - 1.0 * (insurance == "none") + rng.normal(size=rows)
    return pd.DataFrame(
        {"age": age, "sex": rng.choice(["female", "male"], size=rows), "insurance": insurance, "outcome": outcome}
    )


def _timed(frame: pd.DataFrame, **options) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    estimate_observational(frame, graph=GRAPH, treatment="insurance", contrast=("none", "private"), **options)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[500, 2000, 8000])
    parser.add_argument("--simulations", type=int, default=20)
    args = parser.parse_args()
    _timed(_table(100), n_refutation_simulations=2)  # imports dowhy
    for rows in args.rows:
        frame = _table(rows)
        pieces = {"default call": {}, "estimates only": {"refuters": ()}}
        pieces |= {
            f"{method} alone, directions": {"methods": (method,), "refuters": (), "directions": True}
            for method in ("regression", "ipw", "aipw", "matching", "exact_matching")
        }
        pieces |= {
            f"{refuter} on {method}": {"methods": (method,), "refuters": (refuter,)}
            for method in ("regression", "ipw")
            for refuter in ("placebo_treatment", "random_common_cause", "data_subset")
        }
        print(f"\n{rows} rows, {args.simulations} simulations per refuter")
        print(f"{'piece':<38}{'wall s':>8}{'cpu s':>8}{'x default':>11}")
        default = None
        for name, options in pieces.items():
            wall, cpu = _timed(frame, n_refutation_simulations=args.simulations, **options)
            default = default or wall
            print(f"{name:<38}{wall:>8.2f}{cpu:>8.2f}{wall / default:>11.2f}")


if __name__ == "__main__":
    main()
