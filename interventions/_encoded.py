"""Texts tokenized as the model runs them, with each factor's token positions and the decision
position: the common input of the attention, saliency and probe readouts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
import torch

from interventions._adapter import ModelAdapter
from interventions._evaluate import _pad_right, _tokenize
from interventions._sites import architecture_of
from interventions._template import RenderedText
from interventions.errors import InterventionError

EVIDENCE_COLUMNS = ("unit", "factor", "method", "baseline", "layer", "head", "value")
"""Columns of per-unit evidence tables: one value per unit, factor and reading. `baseline`
names an integrated-gradients baseline, `layer` and `head` a per-layer/head attention reading
(NA otherwise)."""
TOKEN_COLUMNS = ("unit", "position", "token", "factor", "method", "baseline", "value")


@dataclass(frozen=True)
class EncodedTexts:
    """Token ids, display strings and positions of a batch of rendered texts.

    `tokens[i]` are text i's tokens as they read, each with the whitespace before it (the
    non-special ones join to the text; special tokens show their name).
    `factor_positions[factor][i]` are the token indices of every occurrence of the factor's
    slot in text i; `decision[i]` is the position the model's outcome is read at (the last
    real token of causal models, the first ([CLS]) of encoder classifiers).
    """

    units: tuple[int, ...]
    token_ids: tuple[tuple[int, ...], ...]
    tokens: tuple[tuple[str, ...], ...]
    special: tuple[tuple[bool, ...], ...]
    factor_positions: Mapping[str, tuple[tuple[int, ...], ...]]
    decision: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.token_ids)

    def batches(
        self, adapter: ModelAdapter, batch_size: int, *, suffix: Sequence[int] = ()
    ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        """(rows, input_ids, attention_mask) per batch, rows sorted by length, right-padded.

        `suffix` token ids are appended to every text (an outcome's continuation).
        """
        order = np.argsort([len(ids) for ids in self.token_ids], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            input_ids, attention_mask = _pad_right(
                [[*self.token_ids[row], *suffix] for row in rows],
                adapter.tokenizer.pad_token_id,
                adapter.device,
            )
            yield rows, input_ids, attention_mask


def encode_texts(
    adapter: ModelAdapter,
    texts: Sequence[RenderedText],
    factors: Sequence[str],
    *,
    units: Sequence[int] | None = None,
) -> EncodedTexts:
    """Tokenize `texts` and locate each factor's tokens and the decision position.

    Raises InterventionError when a factor has no slot in some text (its tokens are needed)
    or when `units` does not give one id per text.
    """
    if isinstance(texts, RenderedText) or isinstance(factors, str):
        raise InterventionError(
            "texts and factors must be sequences (a list of RenderedText, a list of factor "
            f"names), got {type(texts).__name__} and {factors!r}; wrap single items in a list"
        )
    unit_ids = tuple(range(len(texts))) if units is None else tuple(int(u) for u in units)
    if len(unit_ids) != len(texts):
        raise InterventionError(f"units has {len(unit_ids)} ids for {len(texts)} texts; give one unit id per text")
    tokenizer = adapter.tokenizer
    token_ids = _tokenize(adapter, [rendered.text for rendered in texts])
    tokens, special, positions = [], [], {factor: [] for factor in factors}
    for index, rendered in enumerate(texts):
        encoding = tokenizer(
            rendered.text,
            add_special_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        tokens.append(
            _display_tokens(
                rendered.text,
                encoding["offset_mapping"],
                tokenizer.convert_ids_to_tokens(encoding["input_ids"]),
                encoding["special_tokens_mask"],
            )
        )
        special.append(tuple(bool(flag) for flag in encoding["special_tokens_mask"]))
        spans = rendered.token_spans(tokenizer)
        for factor in factors:
            if factor not in spans:
                raise InterventionError(
                    f"factor {factor!r} has no slot in text {index} ({rendered.text[:60]!r}); "
                    f"its slots are {sorted(spans)}; evidence about a factor needs its tokens, "
                    "so leave this factor out or use a template that shows it"
                )
            positions[factor].append(tuple(sorted({i for start, end in spans[factor] for i in range(start, end)})))
    first = architecture_of(adapter.model).decision == "first"
    return EncodedTexts(
        units=unit_ids,
        token_ids=tuple(tuple(ids) for ids in token_ids),
        tokens=tuple(tokens),
        special=tuple(special),
        factor_positions=MappingProxyType({factor: tuple(found) for factor, found in positions.items()}),
        decision=tuple(0 if first else len(ids) - 1 for ids in token_ids),
    )


def _display_tokens(
    text: str, offsets: Sequence[tuple[int, int]], names: Sequence[str], special: Sequence[int]
) -> tuple[str, ...]:
    """Each token as it reads in `text`, with the text since the previous token (its leading
    whitespace), so the non-special tokens join to `text`; special tokens show their name."""
    shown, previous = [], 0
    for (start, end), name, flag in zip(offsets, names, special):
        if flag:
            shown.append(name)
            continue
        stop = max(start, end)
        shown.append(text[previous:stop] if previous < stop else text[start:end])
        previous = max(previous, stop)
    return tuple(shown)


def token_rows(
    encoded: EncodedTexts, row: int, method: str, values: np.ndarray, *, baseline: str | None = None
) -> pd.DataFrame:
    """Text `row`'s per-token `values` (one per token) as rows of `TOKEN_COLUMNS`.

    `factor` names the slot a token belongs to (NA outside slots), so a view can mark them.
    """
    slot = np.full(len(encoded.tokens[row]), None, dtype=object)
    for factor, positions in encoded.factor_positions.items():
        slot[list(positions[row])] = factor
    return pd.DataFrame(
        {
            "unit": encoded.units[row],
            "position": np.arange(len(slot)),
            "token": encoded.tokens[row],
            "factor": slot,
            "method": method,
            "baseline": baseline,
            "value": np.asarray(values, dtype=np.float64),
        }
    )


def stack_rows(pieces: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """Stack row blocks into one frame with exactly `columns` (no blocks: an empty frame)."""
    if not pieces:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(pieces, ignore_index=True)[list(columns)]
