"""Aligning the token positions of a unit's two prompts, segment by template segment.

The two prompts of a unit render one template with different surface forms, so they
may tokenize to different lengths ("Medicaid" is three WordPiece tokens, "private"
one). Positions are matched per segment of the template: literal text token for
token, each slot's span as a whole, special tokens from either end.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from types import MappingProxyType
from typing import Any, Literal

from interventions._template import RenderedText, Template
from interventions.errors import InterventionError

Pairs = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class AlignedPair:
    """A unit's destination (receiving) and source texts with their aligned token positions.

    `positions` maps a position name to its (destination index, source index) pairs:
    "last" (the decision position), "factor" (the treatment's span), "factor:NAME" (any
    slot's span) and "all" (every aligned position). Indices count special tokens.
    """

    destination: RenderedText
    source: RenderedText
    positions: Mapping[str, Pairs]

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", MappingProxyType(dict(self.positions)))


def align(
    destination: RenderedText,
    source: RenderedText,
    template: Template,
    tokenizer: Any,
    *,
    treatment: str,
    decision: Literal["auto", "last", "first"] = "auto",
) -> AlignedPair:
    """Align two renders of `template` position by position under `tokenizer`.

    A slot's span pairs token i with token i when it has as many tokens in both texts,
    else its last token with the other's last token. Literal text pairs its tokens one to
    one (from both ends where a neighbouring slot changed how its edge tokenizes); leading
    and trailing special tokens pair first with first, last with last. `decision` is
    where outcomes are read: the last token (causal LMs), the first ([CLS] of encoder
    classifiers), or "auto": first when the tokenizer starts texts with its CLS token.
    Raises InterventionError when a text is not a render of `template` or `treatment`
    is not one of its slots.
    """
    if treatment not in template.slots:
        raise InterventionError(
            f"treatment {treatment!r} is not a slot of template {template.text!r}; its "
            f"slots are {sorted(set(template.slots))}"
        )
    if decision not in ("auto", "last", "first"):
        raise InterventionError(f"decision must be 'auto', 'last' or 'first', got {decision!r}")
    dest = _Tokens.of(destination, template, tokenizer, "destination")
    src = _Tokens.of(source, template, tokenizer, "source")
    first = decision == "first" or (decision == "auto" and _starts_with_cls(tokenizer, dest))
    slots = {name: _span_pairs(dest.slots[name], src.slots[name]) for name in dict.fromkeys(template.slots)}
    literals = tuple(
        pair
        for dest_tokens, src_tokens in zip(dest.literals, src.literals)
        for pair in _literal_pairs(dest_tokens, src_tokens, dest.ids, src.ids)
    )
    specials = tuple(zip(dest.leading, src.leading)) + tuple(zip(reversed(dest.trailing), reversed(src.trailing)))
    every: dict[int, int] = {}
    for d, s in (*specials, *literals, *(pair for pairs in slots.values() for pair in pairs)):
        every.setdefault(d, s)
    positions = {
        "last": ((0, 0),) if first else ((len(dest.ids) - 1, len(src.ids) - 1),),
        "factor": slots[treatment],
        **{f"factor:{name}": pairs for name, pairs in slots.items()},
        "all": tuple(sorted(every.items())),
    }
    return AlignedPair(destination=destination, source=source, positions=positions)


def mass_targets(pairs: Pairs, source_length: int) -> tuple[int, ...]:
    """For each source position, the destination position its attention mass moves to.

    A source attention row patched into the destination run is laid over the destination's
    keys by the alignment `pairs` (a pair's "all" positions): an aligned key's mass goes to
    its partner; an unaligned key's to the partner of the nearest aligned key after it, else
    before it. So a slot span paired by its last token moves its mass as a whole onto the
    other span's last token, and a row keeps summing to 1. Raises InterventionError when
    nothing is aligned.
    """
    partner: dict[int, int] = {}
    for d, s in pairs:
        partner.setdefault(s, d)
    if not partner:
        raise InterventionError("no position of the pair is aligned, so attention rows cannot be moved across it")
    aligned = sorted(partner)
    targets = []
    for position in range(source_length):
        after = bisect.bisect_left(aligned, position)
        nearest = aligned[after] if after < len(aligned) else aligned[-1]
        targets.append(partner[nearest])
    return tuple(targets)


@dataclass(frozen=True)
class _Tokens:
    """One text's token ids split by template segment."""

    ids: tuple[int, ...]
    _: KW_ONLY
    slots: Mapping[str, tuple[tuple[int, int], ...]]
    literals: tuple[tuple[int, ...], ...]
    leading: tuple[int, ...]
    trailing: tuple[int, ...]

    @classmethod
    def of(cls, text: RenderedText, template: Template, tokenizer: Any, role: str) -> _Tokens:
        bounds = _literal_bounds(text, template, role)
        slot_spans = text.token_spans(tokenizer)
        encoding = tokenizer(
            text.text,
            add_special_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        ids = tuple(encoding["input_ids"])
        in_slot = {index for spans in slot_spans.values() for a, b in spans for index in range(a, b)}
        literals: list[list[int]] = [[] for _ in bounds]
        special: list[int] = []
        for index, ((start, end), is_special) in enumerate(
            zip(encoding["offset_mapping"], encoding["special_tokens_mask"])
        ):
            if is_special:
                special.append(index)
            elif index not in in_slot:
                # A whitespace token may carry trimmed, zero-width offsets at its end.
                segment = next(k for k, (_, stop) in enumerate(bounds) if start < stop or start == end <= stop)
                literals[segment].append(index)
        content = sorted(set(range(len(ids))) - set(special))
        first_content = content[0] if content else len(ids)
        last_content = content[-1] if content else -1
        return cls(
            ids,
            slots=slot_spans,
            literals=tuple(tuple(tokens) for tokens in literals),
            leading=tuple(index for index in special if index < first_content),
            trailing=tuple(index for index in special if index > last_content),
        )


def _literal_bounds(text: RenderedText, template: Template, role: str) -> list[tuple[int, int]]:
    """Character ranges of the template's literal pieces in `text`, checked against it."""
    occurrence: dict[str, int] = {}
    slot_spans = []
    for name in template.slots:
        spans = text.spans.get(name, ())
        index = occurrence.get(name, 0)
        occurrence[name] = index + 1
        if index >= len(spans):
            raise InterventionError(
                f"the {role} text {text.text!r} is not a render of template "
                f"{template.text!r}: it has no span for slot {name!r}; render both texts "
                "from the unit's template"
            )
        slot_spans.append(spans[index])
    starts = [0] + [end for _, end in slot_spans]
    stops = [start for start, _ in slot_spans] + [len(text.text)]
    bounds = list(zip(starts, stops))
    pieces = [text.text[start:stop] for start, stop in bounds]
    if pieces != list(template.literals) or set(text.spans) != set(template.slots):
        raise InterventionError(
            f"the {role} text {text.text!r} is not a render of template {template.text!r}; "
            "render both texts of a unit from the same template"
        )
    return bounds


def _span_pairs(dest: tuple[tuple[int, int], ...], src: tuple[tuple[int, int], ...]) -> Pairs:
    """Pairs of a slot's occurrences: token by token when lengths agree, else last with last."""
    pairs: list[tuple[int, int]] = []
    for (d_start, d_stop), (s_start, s_stop) in zip(dest, src):
        if d_stop - d_start == s_stop - s_start:
            pairs.extend(zip(range(d_start, d_stop), range(s_start, s_stop)))
        else:
            pairs.append((d_stop - 1, s_stop - 1))
    return tuple(pairs)


def _literal_pairs(
    dest: tuple[int, ...], src: tuple[int, ...], dest_ids: tuple[int, ...], src_ids: tuple[int, ...]
) -> Pairs:
    """Pairs of one literal piece's tokens: equal tokens matched from the front and the back."""
    front = 0
    while front < min(len(dest), len(src)) and dest_ids[dest[front]] == src_ids[src[front]]:
        front += 1
    back = 0
    while back < min(len(dest), len(src)) - front and dest_ids[dest[-1 - back]] == src_ids[src[-1 - back]]:
        back += 1
    matched = list(zip(dest[:front], src[:front]))
    if back:
        matched += list(zip(dest[-back:], src[-back:]))
    return tuple(matched)


def _starts_with_cls(tokenizer: Any, tokens: _Tokens) -> bool:
    """True when the tokenizer opens texts with its CLS token, as encoder classifiers read it."""
    cls_id = getattr(tokenizer, "cls_token_id", None)
    return cls_id is not None and 0 in tokens.leading and tokens.ids[0] == cls_id
