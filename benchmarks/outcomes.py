"""Benchmark: five outcomes from one pass, and batched generation, each against its plain alternative.

A randomly initialised GPT-2 (--width, --layers, 64-wide heads) with the demo's tokenizer
reads the demo experiment's texts (experiments/examples/triage.yaml: sampled units in
every arm the run evaluates, distinct texts only). Timed side by side in this process,
best of --repeats, the runs of a section interleaved so drift hits all alike:

1. Outcome sets. Five outcomes from one `evaluate_outcome_set` against five
   `evaluate_outcomes` runs and against one run of a single outcome (goal: the set within
   1.25x of one run). Twice: options of one token each, then options with strings of
   several tokens (" Yes", " No", " yeah" are two or three tokens), whose tails run after
   each batch's cached keys and values.
2. Generation. `generate_outcomes` against a plain loop of batched `model.generate` calls
   over the same texts (tokenizer left padding, answers decoded; goal: no slower), greedy
   and sampled (--samples answers per text; the plain loop asks for as many return
   sequences with top-k off).
3. Runs. `run_experiment` of the demo experiment (patching, evidence and review left out)
   on the same model: one run with the five outcomes of section 1 (options of several
   tokens) against five runs of one outcome each (goal: the five-outcome run within 1.25x
   of one single-outcome run). A run's time includes drawing, storing, estimating and the
   report, whose figures have a panel per outcome: on a small model those fixed costs,
   not the model, set the ratio (try a larger --width and --layers).

Printed: seconds and ratios. The set's values must equal the single runs' to 1e-5, the
greedy answers the plain loop's, and the five-outcome run's stored values the single runs'.
On CPU the seconds are this process's CPU time, so other processes sharing the cores do
not distort the ratios; on CUDA they are wall time after synchronizing. --sections runs
some of the sections only.

    python benchmarks/outcomes.py [--device cpu|cuda] [--units 40] [--batch-size 32]
                                  [--width 256 --layers 4] [--new-tokens 8] [--samples 4]
                                  [--sections sets generation runs]

(From the repository root; in a checkout that is not installed, with PYTHONPATH=.)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from _shared import arm_texts, best_of, random_gpt2

from experiments import run_experiment
from experiments.config import load_experiment, load_yaml
from experiments.demo import EXAMPLE_CONFIG
from interventions import (
    AnswerProb,
    ChoiceProb,
    ExpectedValue,
    Generation,
    LogitDiff,
    ModelAdapter,
    ModelSpec,
    evaluate_outcome_set,
    evaluate_outcomes,
    generate_outcomes,
)

AGREEMENT = 1e-5
SINGLE = {"yes": [" yes"], "no": [" no"]}
MULTI = {"yes": [" yes", " Yes", " yeah"], "no": [" no", " No"]}
PARSE = {"yes": r"(?i)\byes\b", "no": r"(?i)\bno\b"}
SECTIONS = ("sets", "generation", "runs")


def outcome_set(options: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "logit_diff": LogitDiff(" yes", " no"),
        "answer_prob": AnswerProb({"yes": " yes", "no": " no"}, "yes"),
        "choice_yes": ChoiceProb(options, "yes"),
        "choice_no": ChoiceProb(options, "no"),
        "expected": ExpectedValue({"yes": 1.0, "no": -1.0}, options=options),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--units", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument(
        "--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="which sections to run (default all)"
    )
    arguments = parser.parse_args()
    if arguments.repeats < 1:
        parser.error("--repeats must be at least 1")
    with tempfile.TemporaryDirectory() as scratch:
        folder = random_gpt2(Path(scratch) / "model", arguments.width, arguments.layers)
        adapter = ModelAdapter.load(ModelSpec(folder, device=arguments.device))
        texts = list(dict.fromkeys(arm_texts(load_experiment(str(EXAMPLE_CONFIG)), arguments.units)))
        size, repeats = arguments.batch_size, arguments.repeats
        print(
            f"model: random GPT-2, {arguments.layers} layers, width {arguments.width}, vocabulary "
            f"{len(adapter.tokenizer)}; device {adapter.device}; {len(texts)} distinct texts; batch size {size}; "
            f"best of {repeats}"
        )
        failures = []
        if "sets" in arguments.sections:
            failures += _outcome_sets(adapter, texts, size, repeats)
        if "generation" in arguments.sections:
            failures += _generation(adapter, texts, size, repeats, arguments.new_tokens, arguments.samples)
        if "runs" in arguments.sections:
            failures += _runs(Path(scratch), folder, arguments, adapter.device)
    if failures:
        raise SystemExit("; ".join(failures))


def _outcome_sets(adapter: ModelAdapter, texts: list[str], size: int, repeats: int) -> list[str]:
    failures = []
    for title, options in (("one-token options", SINGLE), ("options of several tokens", MULTI)):
        outcomes = outcome_set(options)
        lengths = {
            s: len(adapter.tokenizer(s, add_special_tokens=False)["input_ids"]) for v in options.values() for s in v
        }
        runs = _set_runs(adapter, texts, outcomes, size)
        results = best_of(runs, repeats, adapter.device)
        (_, _, one), (_, separate, five), (_, together, joint) = results
        print(f"\noutcome sets, {title} (token lengths {lengths}):")
        _table(results, one, "vs one", adapter.device)
        print(f"one set / one outcome: {joint / one:.2f}x (goal <= 1.25x); five runs / one set: {five / joint:.2f}x")
        error = max(float(np.abs(together[name] - separate[name]).max()) for name in outcomes)
        print(f"largest |set - separate|: {error:.1e}")
        if error > AGREEMENT:
            failures.append(f"outcome set with {title} differs from separate runs by {error:.1e}")
    return failures


def _generation(
    adapter: ModelAdapter, texts: list[str], size: int, repeats: int, new_tokens: int, samples: int
) -> list[str]:
    greedy = Generation(new_tokens, PARSE, target="yes")
    sampled = Generation(new_tokens, PARSE, target="yes", samples=samples, temperature=1.0)
    sections = [
        (
            "greedy",
            [
                ("plain generate, text order", lambda: _plain_generate(adapter, texts, size, new_tokens)),
                (
                    "plain generate, by length",
                    lambda: _plain_generate(adapter, _by_length(adapter, texts), size, new_tokens),
                ),
                ("generate_outcomes", lambda: generate_outcomes(adapter, texts, greedy, seed=0, batch_size=size)),
            ],
        ),
        (
            f"sampled, {samples} answers per text",
            [
                (
                    "plain generate, text order",
                    lambda: _plain_generate(adapter, texts, size, new_tokens, samples=samples),
                ),
                ("generate_outcomes", lambda: generate_outcomes(adapter, texts, sampled, seed=0, batch_size=size)),
            ],
        ),
    ]
    failures = []
    for title, runs in sections:
        results = best_of(runs, repeats, adapter.device)
        base = results[0][2]
        print(f"\ngeneration, {title}, up to {new_tokens} new tokens:")
        _table(results, base, "vs plain", adapter.device)
        if title == "greedy":
            plain, engine = results[0][1], results[-1][1]
            mismatched = sum(answer != (mine,) for answer, mine in zip(engine.answers, plain))
            print(f"greedy answers differing from the plain loop's: {mismatched} of {len(texts)}")
            if mismatched:
                failures.append(f"{mismatched} greedy answers differ from the plain generate loop's")
    return failures


RUN_OUTCOMES: dict[str, dict[str, Any]] = {
    "logit_diff": {"type": "logit_diff", "answers": {"positive": " yes", "negative": " no"}},
    "answer_prob": {"type": "answer_prob", "answers": {"yes": " yes", "no": " no"}, "target": "yes"},
    "choice_yes": {"type": "choice_prob", "options": MULTI, "target": "yes"},
    "choice_no": {"type": "choice_prob", "options": MULTI, "target": "no"},
    "expected": {"type": "expected_value", "options": MULTI, "values": {"yes": 1.0, "no": -1.0}},
}
"""Section 1's five outcomes (options of several tokens) as a config writes them."""


def _runs(scratch: Path, model: str, arguments: argparse.Namespace, device: torch.device) -> list[str]:
    """A run with the five outcomes against a run of each alone; the stored values must agree."""
    data = load_yaml(EXAMPLE_CONFIG)
    for key in ("mediation", "evidence", "hypotheses", "fairness", "outcome"):
        data.pop(key, None)
    data.update(
        model={"id": model, "task": "causal-lm", "device": arguments.device, "batch_size": arguments.batch_size},
        sampling={"units": arguments.units, "seed": 0},
    )
    configs = {"five outcomes, one run": {**data, "outcomes": [{"name": n, **s} for n, s in RUN_OUTCOMES.items()]}}
    configs.update({f"{name} alone": {**data, "outcome": spec} for name, spec in RUN_OUTCOMES.items()})
    folders = iter(range(10**6))

    def run(config: dict[str, Any]) -> pd.DataFrame:
        path = scratch / f"run-{next(folders)}.yaml"
        path.write_text(json.dumps(config), encoding="utf-8")
        result = run_experiment(load_experiment(path), out_dir=path.with_suffix(""))
        return pd.read_parquet(result.folder / "outcomes.parquet")

    results = best_of(
        [(name, lambda config=config: run(config)) for name, config in configs.items()], arguments.repeats, device
    )
    (_, together, joint), *singles = results
    one = singles[0][2]
    print(f"\nruns of the demo experiment ({arguments.units} units, every arm):")
    _table(results, one, "vs one", device)
    print(
        f"five-outcome run / one single-outcome run: {joint / one:.2f}x (goal <= 1.25x); "
        f"five single runs / five-outcome run: {sum(seconds for _, _, seconds in singles) / joint:.2f}x"
    )
    error = max(
        float(np.abs(together.loc[together["outcome"] == name, "value"].to_numpy() - alone["value"].to_numpy()).max())
        for (_, alone, _), name in zip(singles, RUN_OUTCOMES, strict=True)
    )
    print(f"largest |five-outcome run - single run|: {error:.1e}")
    return [f"the five-outcome run differs from the single runs by {error:.1e}"] if error > AGREEMENT else []


def _set_runs(
    adapter: ModelAdapter, texts: list[str], outcomes: dict[str, Any], size: int
) -> list[tuple[str, Callable[[], Any]]]:
    """One outcome alone, the five one run each, and the five in one set."""
    return [
        (
            "one outcome (logit_diff)",
            lambda: evaluate_outcomes(adapter, texts, outcomes["logit_diff"], batch_size=size),
        ),
        ("five evaluate_outcomes", lambda: _one_by_one(adapter, texts, outcomes, size)),
        ("one evaluate_outcome_set", lambda: evaluate_outcome_set(adapter, texts, outcomes, batch_size=size)),
    ]


def _one_by_one(adapter: ModelAdapter, texts: list[str], outcomes: dict[str, Any], size: int) -> dict[str, np.ndarray]:
    return {name: evaluate_outcomes(adapter, texts, outcome, batch_size=size) for name, outcome in outcomes.items()}


def _plain_generate(
    adapter: ModelAdapter, texts: list[str], batch_size: int, new_tokens: int, *, samples: int = 1
) -> list[str]:
    """The baseline: batches of texts padded on the left by the tokenizer, one `generate` call
    each (sampling asks for `samples` return sequences, so a batch holds as many rows), decoded."""
    answers: list[str] = []
    per_batch = max(1, batch_size // samples)
    options: dict[str, Any] = {"do_sample": False}
    if samples > 1:
        options = {"do_sample": True, "temperature": 1.0, "top_k": 0, "num_return_sequences": samples}
    with torch.inference_mode():
        for start in range(0, len(texts), per_batch):
            batch = adapter.tokenizer(
                texts[start : start + per_batch], padding=True, padding_side="left", return_tensors="pt"
            ).to(adapter.device)
            generated = adapter.model.generate(
                **batch, max_new_tokens=new_tokens, pad_token_id=adapter.tokenizer.pad_token_id, **options
            )
            width = batch["input_ids"].shape[1]
            answers += adapter.tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
    return answers


def _by_length(adapter: ModelAdapter, texts: list[str]) -> list[str]:
    lengths = [len(ids) for ids in adapter.tokenizer(texts)["input_ids"]]
    return [texts[row] for row in np.argsort(lengths, kind="stable")]


def _table(results: list[tuple[str, Any, float]], base: float, against: str, device: torch.device) -> None:
    clock = "cpu s" if device.type == "cpu" else "wall s"
    print(f"{'method':<28} {clock:>8} {against:>9}")
    for name, _, seconds in results:
        print(f"{name:<28} {seconds:>8.3f} {seconds / base:>8.2f}x")


if __name__ == "__main__":
    main()
