"""Benchmark: evaluate_outcomes against a plain batched HuggingFace forward, on the demo.

The texts are the demo experiment's (experiments/examples/triage.yaml): its units rendered
in every arm the run evaluates, read by the demo model (`builtin:triage-demo`, shipped
trained in the package). Timed side by side in this process, best of --repeats:

1. Engine overhead. Over the distinct texts, a plain loop (tokenize a batch with padding,
   one forward, read the logit difference at each last token) against `evaluate_outcomes`
   with prefix sharing off, same batch size: the engine's own cost is the difference.
2. Work saved. Over every (unit, arm) text: the plain loop, the engine with deduplication
   only, and the engine with deduplication and prefix sharing.

Printed: seconds, text tokens per second (tokens of the texts asked for, so work saved
shows as throughput), ratios to the plain loop, and the largest difference between the
engine's outcomes and the plain loop's, which must stay below 1e-4. On CPU the seconds are
this process's CPU time, so other processes sharing the cores do not distort the ratios;
on CUDA they are wall time after synchronizing.

    python benchmarks/throughput.py [--device cpu|cuda] [--units 400] [--batch-size 32]
                                    [--width 512 --layers 6]

(From the repository root; in a checkout that is not installed, with PYTHONPATH=.)
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _shared import arm_texts, best_of, random_gpt2

from experiments.config import resolve_model_path
from experiments.config._compile import load_experiment
from experiments.demo import EXAMPLE_CONFIG
from interventions import ModelAdapter, ModelSpec, evaluate_outcomes
from interventions._prefix import group_prefixes

AGREEMENT = 1e-4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--units", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--width",
        type=int,
        default=None,
        help="instead of the trained demo model, a random GPT-2 this wide "
        "(64-wide heads) with the demo's tokenizer: the same texts, "
        "more compute per token",
    )
    parser.add_argument("--layers", type=int, default=6, help="layers of the --width model")
    arguments = parser.parse_args()
    if arguments.repeats < 1:
        parser.error("--repeats must be at least 1")
    experiment = load_experiment(str(EXAMPLE_CONFIG))
    with tempfile.TemporaryDirectory() as scratch:
        folder = resolve_model_path("builtin:triage-demo")
        if arguments.width is not None:
            folder = random_gpt2(Path(scratch), arguments.width, arguments.layers)
        adapter = ModelAdapter.load(ModelSpec(folder, device=arguments.device))
    print(
        f"model: {adapter.model.config.n_layer} layers, width {adapter.model.config.n_embd}, "
        f"{sum(p.numel() for p in adapter.model.parameters()) / 1e6:.1f}M parameters"
        f"{' (random weights)' if arguments.width is not None else ' (the trained demo)'}"
    )
    texts = arm_texts(experiment, arguments.units)
    distinct = list(dict.fromkeys(texts))
    tokens = dict(zip(distinct, (len(ids) for ids in adapter.tokenizer(distinct)["input_ids"])))
    yes, no = (adapter.tokenizer(answer, add_special_tokens=False)["input_ids"][0] for answer in (" yes", " no"))
    outcome = experiment.outcome
    size, repeats = arguments.batch_size, arguments.repeats

    def plain(batch: list[str]) -> Callable[[], np.ndarray]:
        return lambda: _plain_forward(adapter, batch, size, yes, no)

    def engine(batch: list[str], share: bool) -> Callable[[], np.ndarray]:
        return lambda: evaluate_outcomes(adapter, batch, outcome, batch_size=size, share_prefix=share)

    groups = group_prefixes(list(adapter.tokenizer(distinct)["input_ids"]), keep=0)
    _, first = np.unique(groups.group, return_index=True)
    saved = int(groups.length.sum() - groups.length[first].sum())  # all but one copy each
    print(
        f"device {adapter.device}, batch size {size}, best of {repeats}; "
        f"{arguments.units} units x {len(experiment.arms)} arms = {len(texts)} texts, "
        f"{len(distinct)} distinct, {sum(tokens[t] for t in texts)} tokens"
    )
    print(
        f"prefix sharing: {int((groups.group >= 0).sum())} distinct texts in "
        f"{groups.group.max() + 1} groups; {saved} of {sum(tokens.values())} distinct "
        "tokens need not be recomputed"
    )
    sections = [
        (
            "engine overhead: distinct texts",
            distinct,
            [
                ("plain HF forward", plain(distinct)),
                ("engine, no sharing", engine(distinct, False)),
            ],
        ),
        (
            "work saved: every (unit, arm) text",
            texts,
            [
                ("plain HF forward", plain(texts)),
                ("engine, dedup", engine(texts, False)),
                ("engine, dedup + prefix", engine(texts, True)),
            ],
        ),
    ]
    failures = []
    for title, batch, runs in sections:
        n_tokens = sum(tokens[text] for text in batch)
        results = best_of(runs, repeats, adapter.device)
        (_, reference, base), *_ = results
        print(f"\n{title}: {len(batch)} texts, {n_tokens} tokens")
        clock = "cpu s" if adapter.device.type == "cpu" else "wall s"
        print(f"{'method':<24} {clock:>8} {'tokens/s':>10} {'vs plain':>9} {'max |diff|':>11}")
        for name, values, seconds in results:
            error = float(np.abs(values - reference).max())
            print(f"{name:<24} {seconds:>8.3f} {n_tokens / seconds:>10.0f} {base / seconds:>8.2f}x {error:>11.1e}")
            if error > AGREEMENT:
                failures.append(f"{title}, {name}: differs from the plain forward by {error:.1e}")
        if title.startswith("engine overhead"):
            overhead = results[1][2] / base - 1
            print(f"engine overhead: {100 * overhead:+.1f}% of the plain forward's time")
    if failures:
        raise SystemExit("; ".join(failures))


def _plain_forward(adapter: ModelAdapter, texts: list[str], batch_size: int, yes: int, no: int) -> np.ndarray:
    """The baseline: tokenize once, length-sorted batches padded by the tokenizer, one forward
    each, logits read at each last token."""
    token_ids = adapter.tokenizer(texts)["input_ids"]
    order = np.argsort([len(ids) for ids in token_ids], kind="stable")
    values = np.empty(len(texts))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = adapter.tokenizer.pad({"input_ids": [token_ids[row] for row in rows]}, return_tensors="pt").to(
                adapter.device
            )
            logits = adapter.model(**batch, use_cache=False).logits
            last = logits[torch.arange(len(rows)), batch["attention_mask"].sum(dim=1) - 1]
            values[rows] = (last[:, yes] - last[:, no]).double().cpu().numpy()
    return values


if __name__ == "__main__":
    main()
