"""Running a model over many texts and reading outcome values per text: one outcome, or several from one pass.

A pass runs each distinct text (plus one shared suffix) once, in length-sorted batches, with
shared prefixes run once and out-of-memory batches halved; every reader of that suffix
reads the same logits. Option readers also need their strings' log-probabilities: a
string's first token is read at the text's last position, and the rest of every longer
string runs after the text's keys and values (one extra forward per batch holding only
those tokens) or, where prefix sharing is off or impossible, after the whole text again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from interventions._adapter import ModelAdapter
from interventions._backoff import auto_batch_size, in_batches
from interventions._outcomes import Outcome, _at_last, _bind_evaluation, _ChoiceReader, _Reader, _upcast
from interventions._prefix import (
    PrefixGroups,
    can_share,
    check_cache,
    continue_cache,
    continue_prefixes,
    group_prefixes,
    output_cache,
)
from interventions.errors import InterventionError

if TYPE_CHECKING:
    from transformers import Cache

BatchSize = int | Literal["auto"] | None
_OUTCOME_TYPES = "LogitDiff, AnswerProb, ChoiceProb, ExpectedValue, ClassProb, ClassLogit or ContinuationLogProb"


def evaluate_outcomes(
    adapter: ModelAdapter,
    texts: Sequence[str],
    outcome: Outcome,
    *,
    batch_size: BatchSize = "auto",
    share_prefix: bool = True,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The outcome of every text, as a float64 array aligned with `texts`.

    Identical texts (common across arms) run once. Distinct texts run in batches sorted by
    token length to keep padding small; padding is on the right and masked, so each row
    sees the positions of an unpadded forward and is read at its last real token.
    With `share_prefix`, a causal LM runs a token prefix that several texts begin with
    (the arms of a unit, up to the first changed slot) once and continues each text from
    its keys and values; the outcomes equal those of full forwards up to float rounding.
    `batch_size` "auto" (or None) fits the batch to free CUDA memory (32 texts on CPU);
    a batch that runs out of memory is halved and retried, down to one text.
    `progress(k)` is called after each batch with the number k of distinct texts finished.
    Answers and labels are checked before any forward pass. Option strings of several
    tokens (`ChoiceProb`, `ExpectedValue`) are scored as `evaluate_outcome_set` scores them.
    """
    _check_texts(texts)
    _check_batch_size(batch_size)
    reader = _bind_reading(adapter, outcome, what="outcome")
    values = _evaluate(adapter, texts, {"outcome": reader}, batch_size, share_prefix, progress)
    return values["outcome"]


def evaluate_outcome_set(
    adapter: ModelAdapter,
    texts: Sequence[str],
    outcomes: Mapping[str, Outcome],
    *,
    batch_size: BatchSize = "auto",
    share_prefix: bool = True,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Every named outcome of every text, {name: float64 array aligned with `texts`}, from shared passes.

    Equal to one `evaluate_outcomes` call per outcome, with each distinct text run once for
    all outcomes that read the text as it is: every outcome but `ContinuationLogProb`, whose
    continuation is appended to the text, so each distinct continuation makes one more pass
    over the texts (its outcomes share that pass). Option strings of several tokens
    (`ChoiceProb`, `ExpectedValue`) run after the texts' keys and values, never the texts
    again. Batching, prefix sharing and out-of-memory backoff are `evaluate_outcomes`';
    `progress(k)` counts texts in each pass, so it sums to distinct texts x passes.
    """
    _check_texts(texts)
    if not isinstance(outcomes, Mapping) or not outcomes:
        raise InterventionError(
            f"outcomes must be a non-empty mapping of names to outcomes, got {outcomes!r}; "
            'e.g. {"yes": AnswerProb(...), "gap": LogitDiff(...)}'
        )
    _check_batch_size(batch_size)
    readers = {name: _bind_reading(adapter, outcome, what=f"outcomes[{name!r}]") for name, outcome in outcomes.items()}
    return _evaluate(adapter, texts, readers, batch_size, share_prefix, progress)


def _evaluate(
    adapter: ModelAdapter,
    texts: Sequence[str],
    readers: Mapping[str, _Reader | _ChoiceReader],
    batch_size: BatchSize,
    share_prefix: bool,
    progress: Callable[[int], None] | None,
) -> dict[str, np.ndarray]:
    """Run each distinct text once per suffix among `readers` and give every reader's values per text."""
    distinct = list(dict.fromkeys(texts))
    token_ids = _tokenize(adapter, distinct)
    passes: dict[tuple[int, ...], dict[str, _Reader | _ChoiceReader]] = {}
    for name, reader in readers.items():
        passes.setdefault(reader.suffix if isinstance(reader, _Reader) else (), {})[name] = reader
    for suffix, members in passes.items():
        _check_room(adapter, distinct, token_ids, len(suffix) + _tail_width(members.values()), "continuation tokens")
    values: dict[str, np.ndarray] = {}
    for suffix, members in passes.items():
        options = dict(suffix=suffix, batch_size=batch_size, share_prefix=share_prefix, progress=progress)
        values.update(_read_pass(adapter, token_ids, members, **options))
    row_of = {text: row for row, text in enumerate(distinct)}
    rows = np.array([row_of[text] for text in texts], dtype=np.int64)
    return {name: values[name][rows] for name in readers}


@dataclass(frozen=True)
class _Batch:
    """One batch's forward: logits, each row's last real token, and (when kept) the cache and its mask."""

    logits: torch.Tensor
    last: torch.Tensor
    cache: Cache | None
    mask: torch.Tensor | None


def _read_pass(
    adapter: ModelAdapter,
    token_ids: Sequence[Sequence[int]],
    readers: Mapping[str, _Reader | _ChoiceReader],
    *,
    suffix: tuple[int, ...],
    batch_size: BatchSize,
    share_prefix: bool,
    progress: Callable[[int], None] | None,
) -> dict[str, np.ndarray]:
    """Each reader's float64 value for every text (`token_ids` + `suffix`), from one pass.

    `readers` all append `suffix` (choice readers append none). `progress(k)` is called after
    each batch with its number k of texts.
    """
    plain = {name: reader for name, reader in readers.items() if isinstance(reader, _Reader)}
    choices = {name: reader for name, reader in readers.items() if isinstance(reader, _ChoiceReader)}
    strings = list(dict.fromkeys(string for reader in choices.values() for string in reader.strings))
    column = {string: index for index, string in enumerate(strings)}
    columns = {name: [column[string] for string in reader.strings] for name, reader in choices.items()}
    ids = [[*row, *suffix] for row in token_ids]
    lengths = np.array([len(row) for row in ids], dtype=np.int64)
    longest_tail = _tail_width(readers.values())
    max_length = int(lengths.max(initial=1)) + longest_tail
    size = auto_batch_size(adapter, max_length) if batch_size in ("auto", None) else batch_size
    share = share_prefix and can_share(adapter, max_length)
    groups = group_prefixes(ids, keep=len(suffix)) if share else None
    order = groups.order(lengths) if groups is not None else np.argsort(lengths, kind="stable")
    values = {name: np.empty(len(ids), dtype=np.float64) for name in readers}

    def step(rows: np.ndarray) -> None:
        batch = _run(adapter, ids, groups, rows, keep_cache=share and longest_tail > 0)
        for name, reader in plain.items():
            values[name][rows] = reader.read(batch.logits, batch.last).double().cpu().numpy()
        if choices:
            log_probs = _string_log_probs(adapter, batch, [ids[row] for row in rows], strings)
            for name, reader in choices.items():
                values[name][rows] = reader.read(log_probs[:, columns[name]]).double().cpu().numpy()
        if progress is not None:
            progress(len(rows))

    with torch.inference_mode():
        in_batches(order, size, step, what="texts")
    return values


def _run(
    adapter: ModelAdapter, ids: list[list[int]], groups: PrefixGroups | None, rows: np.ndarray, *, keep_cache: bool
) -> _Batch:
    """The forward of one batch: each group's shared prefix once, then every row's continuation."""
    pad, device = adapter.tokenizer.pad_token_id, adapter.device
    if groups is None or not groups.length[rows].any():
        input_ids, attention_mask = _pad_right([ids[row] for row in rows], pad, device)
        output = adapter.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=keep_cache)
        cache = output_cache(output) if keep_cache else None
        if keep_cache:
            check_cache(adapter, cache)
        return _Batch(output.logits, attention_mask.sum(dim=1) - 1, cache, attention_mask if keep_cache else None)
    shared = groups.length[rows]
    sharing = rows[shared > 0]
    present, leader = np.unique(groups.group[sharing], return_index=True)
    # Rows sharing nothing (group -1) point at the first prefix and keep none of it.
    owner = np.searchsorted(present, groups.group[rows])
    prefix_ids, prefix_mask = _pad_right([ids[row][: groups.length[row]] for row in sharing[leader]], pad, device)
    input_ids, attention_mask = _pad_right([ids[row][offset:] for row, offset in zip(rows, shared)], pad, device)
    logits, cache, mask = continue_prefixes(
        adapter,
        prefix_ids,
        prefix_mask,
        torch.as_tensor(owner, dtype=torch.long, device=device),
        torch.as_tensor(shared, dtype=torch.long, device=device),
        input_ids,
        attention_mask,
    )
    return _Batch(logits, attention_mask.sum(dim=1) - 1, cache, mask)


def _tail_width(readers: Iterable[_Reader | _ChoiceReader]) -> int:
    """Tokens run after a text for its option strings: all but the last of the longest string."""
    return max(
        (len(ids) - 1 for reader in readers if isinstance(reader, _ChoiceReader) for ids in reader.strings), default=0
    )


def _string_log_probs(
    adapter: ModelAdapter, batch: _Batch, texts: list[list[int]], strings: list[tuple[int, ...]]
) -> torch.Tensor:
    """(rows, strings) float32 log p(string | text), teacher-forced, for the batch's texts."""
    first = torch.log_softmax(_upcast(_at_last(batch.logits, batch.last)), dim=-1)[:, [ids[0] for ids in strings]]
    longer = [index for index, ids in enumerate(strings) if len(ids) > 1]
    if not longer:
        return first
    rest = _tail_log_probs(adapter, batch, texts, [strings[index] for index in longer])
    return first.index_add(1, torch.tensor(longer, device=first.device), rest)


def _tail_log_probs(
    adapter: ModelAdapter, batch: _Batch, texts: list[list[int]], tails: list[tuple[int, ...]]
) -> torch.Tensor:
    """(rows, tails) float32 log-probabilities of each tail's tokens after its first one.

    Each (text, tail) row feeds the tail's tokens but its last, after the text's cached keys
    and values when the batch kept them and after the whole text otherwise; the token at
    tail position j + 1 is read from the logits at its position j.
    """
    pad, device = adapter.tokenizer.pad_token_id, adapter.device
    n_texts, n_tails = len(texts), len(tails)
    owner = torch.arange(n_texts, device=device).repeat_interleave(n_tails)
    lengths = torch.tensor([len(ids) for ids in texts], device=device)[owner]
    fed = [list(tail[:-1]) for _ in texts for tail in tails]
    if batch.cache is not None:
        input_ids, attention_mask = _pad_right(fed, pad, device)
        logits, _, _ = continue_cache(
            adapter, batch.cache, batch.mask[owner], owner, lengths, input_ids, attention_mask
        )
        start = torch.zeros_like(lengths)
    else:
        whole = [[*texts[row], *tokens] for row, tokens in zip(owner.tolist(), fed)]
        input_ids, attention_mask = _pad_right(whole, pad, device)
        logits = adapter.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        start = lengths
    targets, present = _pad_right([list(tail[1:]) for _ in texts for tail in tails], 0, device)
    positions = start[:, None] + torch.arange(targets.shape[1], device=device)
    positions = positions.masked_fill(present == 0, 0)
    rows = torch.arange(len(fed), device=device)[:, None]
    log_probs = torch.log_softmax(_upcast(logits[rows, positions]), dim=-1)
    picked = log_probs.gather(-1, targets[..., None])[..., 0]
    return torch.where(present.bool(), picked, 0.0).sum(dim=-1).view(n_texts, n_tails)


def _check_texts(texts: object) -> None:
    if isinstance(texts, str):
        raise InterventionError("texts must be a sequence of strings, got one string; wrap it in a list")


def _check_batch_size(batch_size: object) -> None:
    if batch_size in ("auto", None):
        return
    if not isinstance(batch_size, int) or isinstance(batch_size, bool):
        raise InterventionError(
            f"batch_size must be an int, 'auto' or None, got {batch_size!r}; 'auto' fits batches to free device memory"
        )
    if batch_size < 1:
        raise InterventionError(f"batch_size must be at least 1, got {batch_size}")


def _bind_outcome(adapter: ModelAdapter, outcome: Outcome) -> _Reader:
    """`outcome` bound to read one forward per text (as patching and saliency run the model);
    InterventionError when it is not an outcome spec."""
    _check_outcome(outcome, "outcome")
    return outcome._bind(adapter)


def _bind_reading(adapter: ModelAdapter, outcome: Outcome, *, what: str) -> _Reader | _ChoiceReader:
    """`outcome` bound for evaluation: options read from strings of any token length."""
    _check_outcome(outcome, what)
    return _bind_evaluation(adapter, outcome)


def _check_outcome(outcome: object, what: str) -> None:
    if not isinstance(outcome, Outcome):
        raise InterventionError(f"{what} must be {_OUTCOME_TYPES}, got {outcome!r}")


def _tokenize(adapter: ModelAdapter, texts: list[str]) -> list[list[int]]:
    """Token ids of each text as the model is run (special tokens added), length-checked."""
    if not texts:
        return []
    token_ids = adapter.tokenizer(texts, add_special_tokens=True)["input_ids"]
    limit = getattr(adapter.model.config, "max_position_embeddings", None)
    for text, ids in zip(texts, token_ids):
        if not ids:
            raise InterventionError(f"text {text!r} has no tokens; there is nothing to read")
        if limit is not None and len(ids) > limit:
            raise InterventionError(
                f"text {text[:40]!r}... has {len(ids)} tokens but the model takes at most {limit}; shorten the template"
            )
    return token_ids


def _check_room(adapter: ModelAdapter, texts: list[str], token_ids: list[list[int]], extra: int, what: str) -> None:
    """Raise when a text and the `extra` tokens run after it (`what` they are) pass the model's last position."""
    limit = getattr(adapter.model.config, "max_position_embeddings", None)
    for text, ids in zip(texts, token_ids):
        if limit is not None and extra and len(ids) + extra > limit:
            raise InterventionError(
                f"text {text[:40]!r}... has {len(ids)} tokens and {extra} {what} after it would pass the model's "
                f"{limit} positions; shorten the template or the {what}"
            )


def _pad_right(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and the attention mask marking real tokens."""
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return input_ids.to(device), attention_mask.to(device)
