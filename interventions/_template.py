"""Prompt templates with named slots, rendered with the character span of every slot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from interventions.errors import InterventionError, TemplateError

Spans = Mapping[str, tuple[tuple[int, int], ...]]


@dataclass(frozen=True)
class Template:
    """A prompt with `{name}` slots; `{{` and `}}` stand for literal braces.

    Parsed once at construction so a bad template fails before any unit is rendered.

    >>> Template.parse("{age} year old, {{age}} {age}").slots
    ('age', 'age')
    """

    text: str
    slots: tuple[str, ...] = field(init=False)
    literals: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """Literal text around the slots (escapes resolved); one more entry than `slots`."""

    def __post_init__(self) -> None:
        literals, slots = _parse(self.text)
        object.__setattr__(self, "slots", slots)
        object.__setattr__(self, "literals", literals)

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse `text`; raises TemplateError on unbalanced braces or bad slot names."""
        return cls(text)

    def render(self, forms: Mapping[str, str]) -> RenderedText:
        """Fill every slot with its surface form from `forms` (extra keys are ignored)."""
        missing = [slot for slot in dict.fromkeys(self.slots) if slot not in forms]
        if missing:
            raise TemplateError(
                f"no surface form for slot(s) {missing} of template {self.text!r}; forms were given for {sorted(forms)}"
            )
        pieces = [self.literals[0]]
        spans: dict[str, list[tuple[int, int]]] = {}
        position = len(self.literals[0])
        for slot, literal in zip(self.slots, self.literals[1:]):
            form = forms[slot]
            spans.setdefault(slot, []).append((position, position + len(form)))
            pieces += [form, literal]
            position += len(form) + len(literal)
        return RenderedText(text="".join(pieces), spans={slot: tuple(found) for slot, found in spans.items()})


@dataclass(frozen=True)
class RenderedText:
    """A rendered prompt and the character spans `[start, end)` of each slot occurrence."""

    text: str
    spans: Spans

    def __post_init__(self) -> None:
        object.__setattr__(self, "spans", MappingProxyType(dict(self.spans)))

    def token_spans(self, tokenizer: Any) -> Spans:
        """Token index spans `[start, end)` of each slot occurrence, as the model is run.

        A token belongs to a slot when its character offsets overlap the slot's span, so
        subword pieces (WordPiece `##`, byte-level BPE leading-space tokens) are included.
        Special tokens and zero-width offsets are ignored; indices count special tokens
        because the model sees them (`add_special_tokens=True`).
        """
        if not getattr(tokenizer, "is_fast", False):
            raise InterventionError(
                f"token spans need a fast tokenizer (character offsets); got "
                f"{type(tokenizer).__name__}; load it with AutoTokenizer(..., use_fast=True)"
            )
        encoding = tokenizer(
            self.text,
            add_special_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        offsets = [
            (index, start, end)
            for index, ((start, end), special) in enumerate(
                zip(encoding["offset_mapping"], encoding["special_tokens_mask"])
            )
            if end > start and not special
        ]
        return MappingProxyType(
            {slot: tuple(_covering_tokens(offsets, span, slot) for span in spans) for slot, spans in self.spans.items()}
        )


def _covering_tokens(offsets: list[tuple[int, int, int]], span: tuple[int, int], slot: str) -> tuple[int, int]:
    """The token index range whose character offsets overlap the character `span`."""
    start, end = span
    indices = [index for index, first, last in offsets if first < end and last > start]
    if not indices:
        raise InterventionError(
            f"slot {slot!r} at characters {start}..{end} covers no token; its surface "
            "form is empty or only whitespace; give the value a visible surface form"
        )
    return indices[0], indices[-1] + 1


def _parse(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split a template into literal pieces and slot names, resolving `{{` and `}}`."""
    literals: list[str] = []
    slots: list[str] = []
    literal: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if text.startswith(("{{", "}}"), index):
            literal.append(char)
            index += 2
        elif char == "}":
            raise TemplateError(
                f"unmatched '}}' at position {index} in template {text!r}; write '}}}}}}}}' for a literal brace"
            )
        elif char == "{":
            close = text.find("}", index + 1)
            name = text[index + 1 : close]
            if close == -1 or "{" in name:
                raise TemplateError(
                    f"unclosed '{{' at position {index} in template {text!r}; close the slot "
                    "as {name} or write '{{{{' for a literal brace"
                )
            if not name:
                raise TemplateError(
                    f"empty slot '{{}}' at position {index} in template {text!r}; name it, "
                    "e.g. {age}, or write '{{{{}}}}' for literal braces"
                )
            if not name.isidentifier():
                raise TemplateError(
                    f"slot name {name!r} at position {index} in template {text!r} is not an "
                    "identifier; slot names are letters, digits and underscores, e.g. {age}"
                )
            literals.append("".join(literal))
            slots.append(name)
            literal = []
            index = close + 1
        else:
            literal.append(char)
            index += 1
    literals.append("".join(literal))
    return tuple(literals), tuple(slots)
