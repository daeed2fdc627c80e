"""What the model benchmarks share: a random GPT-2 of a chosen size, the demo's texts, and side-by-side timing.

Imported by the benchmark scripts as `_shared` (a script's own folder is first on its path).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from experiments.config import Experiment, resolve_model_path
from experiments.run import realize_arms
from interventions import render_world


def random_gpt2(folder: Path, width: int, layers: int) -> str:
    """A randomly initialised GPT-2 of the given size (64-wide heads) with the demo's tokenizer, saved; its path."""
    demo = resolve_model_path("builtin:triage-demo")
    config = GPT2Config.from_pretrained(demo)
    config.update({"n_embd": width, "n_layer": layers, "n_head": max(1, width // 64)})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        GPT2LMHeadModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(demo).save_pretrained(folder)
    return str(folder)


def arm_texts(experiment: Experiment, n_units: int) -> list[str]:
    """Every sampled unit's prompt in every arm, as a run evaluates them (arm-major)."""
    units = experiment.model.sample_units(n_units, seed=experiment.config.sampling.seed)
    return [
        rendered.text
        for world in realize_arms(experiment, units).values()
        for rendered in render_world(experiment.templates, world)
    ]


def best_of(
    runs: list[tuple[str, Callable[[], Any]]], repeats: int, device: torch.device
) -> list[tuple[str, Any, float]]:
    """(name, result, best seconds) of each run; runs interleave so drift hits all alike, round 0 warms up.

    On CPU the seconds are this process's CPU time (other processes on shared cores do not
    count); on CUDA, wall time after synchronizing.
    """
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    best = {name: np.inf for name, _ in runs}
    found: dict[str, Any] = {}
    for round_number in range(repeats + 1):
        for name, run in runs:
            _synchronize()
            began = clock()
            found[name] = run()
            _synchronize()
            if round_number:
                best[name] = min(best[name], clock() - began)
    return [(name, found[name], best[name]) for name, _ in runs]


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
