"""Benchmark: patching sweeps, the stacked engine against a plain loop, side by side.

A randomly initialised GPT-2-architecture model (6 layers, width 256, 8 heads) reads
units of 64-token prompts, patched from the unit's counterfactual prompt. Three sweeps,
each timed in this process against a plain loop (one full forward per patch, the patch
applied by a hook):

- resid_pre: every layer's residual stream at every token position, one at a time
  (`--units` units), also screened by `attribution_effects`;
- heads, all positions: every head's output (`head.L.H`) at every aligned position at
  once (`--units` units);
- heads, per position: every head's output at every `--head-stride`-th token position,
  one at a time (`--head-units` units).

Printed per sweep: wall time and speed-up over the plain loop, the same in CPU time of
this process (steadier when other processes share the machine), layer-forwards (one
prompt through one block, however many positions), block positions computed, and the
peak memory above the start of each phase (process RSS on CPU, allocated CUDA memory on
GPU).
The engine must agree with the plain loop to 1e-4.

    python benchmarks/patching.py [--device cpu|cuda] [--units 16] [--head-units 2] [--head-stride 4]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from interventions import (
    AlignedPair,
    LogitDiff,
    ModelAdapter,
    ModelSpec,
    Site,
    Template,
    align,
    architecture_of,
    attribution_effects,
    model_sites,
    patch_effects,
)
from interventions._evaluate import _bind_outcome
from interventions._hooks import site_hooks

PROMPT_TOKENS = 64
LAYERS = 6
WIDTH = 256
HEADS = 8
TEMPLATE = Template.parse(
    "Triage note for the emergency department. A {age} year old {sex} patient with "
    "{insurance} insurance reports {symptom} since this morning. No fever, stable vitals, "
    "a history of mild hypertension treated at home, no recent travel, no known allergies, "
    "no recent falls or injuries, and no previous scans this year. Refer for CT? Answer:"
)
FACTORS = {
    "age": ["24", "31", "45", "52", "67", "74", "81", "38"],
    "sex": ["male", "female"],
    "insurance": ["private", "public"],
    "symptom": ["headache", "dizziness", "nausea", "fatigue"],
}
OUTCOME = LogitDiff(" yes", " no")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--head-units", type=int, default=2)
    parser.add_argument("--head-stride", type=int, default=4)
    arguments = parser.parse_args()
    every_token = [f"token:{index}" for index in range(PROMPT_TOKENS)]
    with tempfile.TemporaryDirectory() as folder:
        adapter = _model(Path(folder), arguments.device)
        pairs = _pairs(adapter, arguments.units)
        print(f"device {adapter.device}, {LAYERS} layers, {HEADS} heads, {PROMPT_TOKENS}-token prompts")
        errors = [
            _sweep(
                adapter,
                "resid_pre, per position",
                pairs,
                model_sites(adapter, ["resid_pre"]),
                every_token,
                screen=True,
            ),
            _sweep(adapter, "heads, all positions", pairs, model_sites(adapter, ["head"]), ["all"]),
            _sweep(
                adapter,
                "heads, per position",
                pairs[: arguments.head_units],
                model_sites(adapter, ["head"]),
                every_token[:: arguments.head_stride],
            ),
        ]
    if max(errors) > 1e-4:
        raise SystemExit(f"engine disagrees with the plain loop by {max(errors):.2e}")


def _sweep(
    adapter: ModelAdapter,
    title: str,
    pairs: list[AlignedPair],
    sites: list[Site],
    positions: list[str],
    *,
    screen: bool = False,
) -> float:
    """Time one sweep three (or two) ways side by side, print the table; the engine's largest error."""
    print(
        f"\n{title}: {len(sites)} sites x {len(positions)} positions x {len(pairs)} units = "
        f"{len(sites) * len(positions) * len(pairs)} patches"
    )
    (plain, plain_work), plain_times, plain_memory = _measure(
        adapter, lambda: _plain_loop(adapter, pairs, sites, positions)
    )
    result, engine_times, engine_memory = _measure(
        adapter, lambda: patch_effects(adapter, OUTCOME, pairs, sites, positions)
    )
    error = float(np.abs(result.patched["outcome"].to_numpy() - plain).max())
    work = result.work
    rows = [
        ("plain loop", plain_times, plain_work["layer_forwards"], plain_work["position_layers"], plain_memory),
        ("patch_effects", engine_times, work["layer_forwards"], work["position_layers"], engine_memory),
    ]
    if screen:
        estimates, screen_times, screen_memory = _measure(
            adapter, lambda: attribution_effects(adapter, OUTCOME, pairs, sites, positions)
        )
        forwards = 2 * len(pairs) * LAYERS
        rows.append(("attribution_effects", screen_times, forwards, forwards * PROMPT_TOKENS, screen_memory))
    print(
        f"{'method':<20} {'seconds':>9} {'speed-up':>9} {'cpu s':>8} {'cpu speed-up':>13} "
        f"{'layer-fwd':>10} {'pos-layers':>11} {'peak MiB':>9}"
    )
    for name, (seconds, cpu), layers, positions_done, memory in rows:
        print(
            f"{name:<20} {seconds:>9.2f} {plain_times[0] / seconds:>8.1f}x {cpu:>8.2f} "
            f"{plain_times[1] / cpu:>12.1f}x {layers:>10} "
            f"{positions_done:>11} {memory / 2**20:>9.1f}"
        )
    print(
        f"engine vs plain loop: max |difference| {error:.2e}; patches skipped as "
        f"identical {work['patches_skipped_identical']} of {work['patches']}; "
        f"{work['batches']} stacked batches"
    )
    if screen:
        change = result.patched["outcome"].to_numpy() - result.destination[result.patched["unit"]]
        estimate = estimates["estimate"].to_numpy()
        moved = estimate != 0  # patches that write a different activation
        agreement = stats.spearmanr(estimate[moved], change[moved]).statistic
        print(
            f"attribution vs exact: Spearman rank correlation {agreement:.3f} over the "
            f"{int(moved.sum())} patches that change an activation"
        )
        print("(attribution's layer-forwards count its forward passes; it also runs one backward pass per destination)")
    return error


def _model(folder: Path, device: str) -> ModelAdapter:
    """A random GPT-2 with a byte-level BPE tokenizer trained on the benchmark's prompts."""
    corpus = [
        TEMPLATE.render({name: values[i % len(values)] for name, values in FACTORS.items()}).text + " yes no"
        for i in range(64)
    ]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus * 10,
        trainers.BpeTrainer(
            vocab_size=1000,
            special_tokens=["</s>"],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="</s>")
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return ModelAdapter.load(ModelSpec(str(folder), device=device))


def _pairs(adapter: ModelAdapter, count: int) -> list[AlignedPair]:
    """Units with public (destination) vs private (source) insurance, positions per token."""
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(count):
        forms = {name: str(rng.choice(values)) for name, values in FACTORS.items()}
        destination = TEMPLATE.render({**forms, "insurance": "public"})
        source = TEMPLATE.render({**forms, "insurance": "private"})
        pair = align(destination, source, TEMPLATE, adapter.tokenizer, treatment="insurance")
        tokens = dict(pair.positions["all"])
        if sorted(tokens) != list(range(PROMPT_TOKENS)):
            raise SystemExit(f"prompt {destination.text!r} is not {PROMPT_TOKENS} aligned tokens")
        by_token = {f"token:{d}": ((d, s),) for d, s in tokens.items()}
        pairs.append(AlignedPair(destination, source, {**pair.positions, **by_token}))
    return pairs


def _plain_loop(
    adapter: ModelAdapter, pairs: list[AlignedPair], sites: list[Site], positions: list[str]
) -> tuple[np.ndarray, dict[str, int]]:
    """The reference: one full forward per (unit, site, position), patched by a hook."""
    architecture = architecture_of(adapter.model)
    reader = _bind_outcome(adapter, OUTCOME)
    d_head = architecture.d_head

    def forward(ids: list[int], edits) -> float:
        with torch.inference_mode(), site_hooks(adapter.model, architecture, edits):
            logits = adapter.model(input_ids=torch.tensor([ids], device=adapter.device)).logits
            last = torch.tensor([len(ids) - 1], device=adapter.device)
            return float(reader.read(logits.float(), last))

    values, forwards = [], 0
    for pair in pairs:
        destination = adapter.tokenizer(pair.destination.text)["input_ids"]
        source = adapter.tokenizer(pair.source.text)["input_ids"]
        captured = {}
        forward(source, {point: _keep(captured, point) for point in {site.point for site in sites}})
        forwards += 1
        for site in sites:
            width = slice(None) if site.head is None else slice(site.head * d_head, (site.head + 1) * d_head)
            for position in positions:
                aligned = pair.positions[position]

                def patch(
                    activation: torch.Tensor, aligned=aligned, width=width, source=captured[site.point]
                ) -> torch.Tensor:
                    activation = activation.clone()
                    for d, s in aligned:
                        activation[:, d, width] = source[:, s, width]
                    return activation

                values.append(forward(destination, {site.point: patch}))
                forwards += 1
    layers = forwards * LAYERS
    return np.array(values), {"layer_forwards": layers, "position_layers": layers * PROMPT_TOKENS}


def _keep(store: dict, point) -> Callable[[torch.Tensor], None]:
    """An edit that stores a copy of the activation under `point`."""

    def edit(activation: torch.Tensor) -> None:
        store[point] = activation.clone()

    return edit


def _measure(adapter: ModelAdapter, run: Callable[[], Any]) -> tuple[Any, tuple[float, float], int]:
    """(result, (wall seconds, CPU seconds of this process), peak bytes above the phase's start).

    CPU seconds stay comparable when other processes share the machine; wall seconds do not.
    """
    with _peak_memory(adapter.device) as peak:
        start, cpu = time.perf_counter(), time.process_time()
        result = run()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return result, (seconds, cpu), peak()


@contextmanager
def _peak_memory(device: torch.device) -> Iterator[Callable[[], int]]:
    """Peak memory above the start: CUDA allocations, or process RSS sampled every 2 ms."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield lambda: torch.cuda.max_memory_allocated(device) - base
        return
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            peak[0] = max(peak[0], _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: peak[0] - base
    finally:
        done.set()
        sampler.join()


def _rss() -> int:
    """Resident memory of this process in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


if __name__ == "__main__":
    main()
