"""Generating answers after many texts in batches, with each (text, sample) drawn from its own seeded stream."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from interventions._adapter import ModelAdapter
from interventions._backoff import auto_batch_size, in_batches
from interventions._evaluate import BatchSize, _check_batch_size, _check_room, _check_texts, _tokenize
from interventions._generation import Generation, GenerationResult
from interventions._outcomes import _require_task
from interventions.errors import InterventionError


def generate_outcomes(
    adapter: ModelAdapter,
    texts: Sequence[str],
    generation: Generation,
    *,
    seed: int,
    batch_size: BatchSize = "auto",
) -> GenerationResult:
    """Each text's generated answers, parsed into options and averaged into its value.

    Distinct texts run once, each as `generation.samples` rows of left-padded, length-sorted
    batches through `model.generate`, so greedy answers equal `model.generate(...,
    do_sample=False)` on each text alone (up to float rounding). A sampled answer takes its
    token at step t from the inverse CDF at the t-th uniform of a stream seeded by (seed,
    text, sample): the same seed gives a text the same answers whatever the other texts and
    the batch size, and different texts independent ones. `batch_size` counts answers (rows);
    "auto" fits them to free CUDA memory, and a batch that runs out of memory is halved.
    """
    _check_texts(texts)
    if not isinstance(generation, Generation):
        raise InterventionError(f"generation must be a Generation, got {generation!r}")
    _require_task(generation, adapter, "causal-lm")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InterventionError(f"seed must be an int >= 0, got {seed!r}")
    _check_batch_size(batch_size)
    distinct = list(dict.fromkeys(texts))
    token_ids = _tokenize(adapter, distinct)
    _check_room(adapter, distinct, token_ids, generation.max_new_tokens, "new tokens")
    samples, steps = generation.samples, generation.max_new_tokens
    lengths = np.repeat([len(ids) for ids in token_ids], samples).astype(np.int64)
    uniforms = _uniforms(distinct, samples, steps, seed) if generation.sampled else None
    answers = [""] * len(lengths)
    pad = adapter.tokenizer.pad_token_id

    def step(rows: np.ndarray) -> None:
        input_ids, attention_mask = _pad_left([token_ids[row // samples] for row in rows], pad, adapter.device)
        processors = LogitsProcessorList()
        if uniforms is not None:
            drawn = torch.as_tensor(uniforms[rows], device=adapter.device)
            processors.append(_InverseCdf(drawn, input_ids.shape[1], generation.temperature))
        generated = adapter.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=steps,
            do_sample=False,
            pad_token_id=pad,
            logits_processor=processors,
        )
        for row, tokens in zip(rows, generated[:, input_ids.shape[1] :].tolist()):
            answers[row] = adapter.tokenizer.decode(tokens, skip_special_tokens=True)

    size = auto_batch_size(adapter, int(lengths.max(initial=1)) + steps) if batch_size in ("auto", None) else batch_size
    with torch.inference_mode():
        in_batches(np.argsort(lengths, kind="stable"), size, step, what="answers")
    return _result(texts, distinct, answers, generation, seed)


class _InverseCdf(LogitsProcessor):
    """Turns each row's scores into a one-hot of the token its uniform picks, by the inverse CDF of
    softmax(scores / temperature), so greedy decoding takes exactly that sampled token."""

    def __init__(self, uniforms: torch.Tensor, prompt_width: int, temperature: float) -> None:
        self.uniforms, self.prompt_width, self.temperature = uniforms, prompt_width, temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_width
        probabilities = torch.softmax(scores.double() / self.temperature, dim=-1)
        cdf = probabilities.cumsum(dim=-1)
        total = cdf[:, -1:]
        # Kept below the total, so the point never falls past the last token of positive probability.
        point = torch.minimum(
            self.uniforms[:, step : step + 1] * total, torch.nextafter(total, torch.zeros_like(total))
        )
        token = torch.searchsorted(cdf, point, right=True)
        return torch.full_like(scores, -torch.inf).scatter_(1, token, 0.0)


def _uniforms(texts: list[str], samples: int, steps: int, seed: int) -> np.ndarray:
    """(texts x samples, steps) uniforms in [0, 1): row (i, s) from a stream keyed by (seed, s, text i)."""
    rows = []
    for text in texts:
        for sample in range(samples):
            key = hashlib.sha256(f"{seed}:{sample}:".encode() + text.encode()).digest()
            rows.append(np.random.default_rng(int.from_bytes(key, "little")).random(steps))
    return np.array(rows, dtype=np.float64).reshape(len(texts) * samples, steps)


def _result(
    texts: Sequence[str], distinct: list[str], answers: list[str], generation: Generation, seed: int
) -> GenerationResult:
    """Answers parsed and counted per distinct text, laid out along `texts`."""
    samples = generation.samples
    per_text = [tuple(answers[row * samples : (row + 1) * samples]) for row in range(len(distinct))]
    parsed = [[generation.parse_answer(answer) for answer in group] for group in per_text]
    options = [tuple(option for option, _ in group) for group in parsed]
    counted = [[generation.value_of(option) for option in group] for group in options]
    values = np.array(
        [np.mean(kept) if (kept := [v for v in group if not np.isnan(v)]) else np.nan for group in counted]
    )
    unparsed = np.array([group.count(None) for group in options], dtype=np.int64)
    ambiguous = np.array([sum(flag for _, flag in group) for group in parsed], dtype=np.int64)
    row_of = {text: row for row, text in enumerate(distinct)}
    rows = np.array([row_of[text] for text in texts], dtype=np.int64)
    return GenerationResult(
        texts=tuple(texts),
        values=_frozen(values[rows].astype(np.float64)),
        answers=tuple(per_text[row] for row in rows),
        options=tuple(options[row] for row in rows),
        unparsed=_frozen(unparsed[rows]),
        ambiguous=_frozen(ambiguous[rows]),
        generation=generation,
        seed=seed,
    )


def _pad_left(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded input ids and the attention mask marking real tokens (generation appends on the right)."""
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
