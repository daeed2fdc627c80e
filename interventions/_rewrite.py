"""Counterfactual rewriting of free text: do(factor=value) of a real document, by rules.

A rule file (YAML) says the same thing in each value of one factor:

    factor: insurance          # optional; when given, the factor the rules are loaded for
    values: [private, public, none]
    forms:                     # each row: the same thing said in each value
      - {private: "private insurance", public: "Medicaid", none: "no insurance"}
      - {private: "privately insured", public: "on Medicaid", none: "uninsured"}
    function_words: [the, to]  # optional; words that do not start a noun phrase

Every row names a form for every value; a form belongs to one value only. A form is
found only as a whole word or phrase: a letter, digit, `_` or `-` right before or after
it blocks the match (hyphenated words are left alone), an apostrophe does not ("woman's"
is "woman" + "'s"); any run of whitespace may stand between its words; the longest form
wins. A form in lower case also matches Capitalised, Title Case and UPPER CASE, and its
counterpart takes the same case; a form with a capital letter (a name, a title,
"Medicaid") matches only as written, and a lower-case counterpart of it is capitalised
at the start of a sentence. Where a form is in several rows of its value, the first row
that applies gives its counterpart; a row with `when: before_noun` applies only where
the form is followed, across spaces and at most one line break, by a word that is not
in `function_words` (how "her arm" -> "his arm" but "saw her" -> "saw him"). Quote
forms and values that YAML would read as booleans or numbers (yes, no, on, off, 65).
`builtin:NAME` loads a lexicon shipped in interventions/lexicons (builtin:sex).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from interventions._template import RenderedText
from interventions.errors import InterventionError, RewriteError

_FILE_KEYS = ("factor", "values", "forms", "function_words")
_CONDITIONS = ("before_noun",)
_WHEN = "when"
_NEXT_WORD = re.compile(r"[^\S\n]*(?:\n[^\S\n]*)?(\w+)")  # a blank line ends it
_SENTENCE_END = ".!?\n"
_WORD = re.compile(r"\w")


class _Match(NamedTuple):
    """A form found in a text; `form` as the rules write it (the text may show another case)."""

    start: int
    end: int
    value: str
    form: str


@dataclass(frozen=True)
class RewriteRules:
    """Surface forms of one factor's values, row by row, and how to swap them in a text.

    Load them with `RewriteRules.load("builtin:sex", factor="sex")` or from a rule file
    (format in the module docstring); the rows are checked at construction.
    """

    factor: str
    values: tuple[str, ...]
    forms: tuple[Mapping[str, str], ...] = field(repr=False)
    """Rows: value -> form, plus an optional "when" condition."""
    function_words: frozenset[str] = field(default=frozenset(), repr=False)
    origin: str = field(default="rules", repr=False, compare=False)
    """Where the rules came from (a file or builtin:NAME), named in errors."""
    _surfaces: Mapping[str, tuple[str, str]] = field(init=False, repr=False, compare=False)
    _rows_of: Mapping[tuple[str, str], tuple[int, ...]] = field(init=False, repr=False, compare=False)
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        object.__setattr__(self, "forms", tuple(dict(row) for row in self.forms))
        object.__setattr__(self, "function_words", frozenset(word.lower() for word in self.function_words))
        self._check_values()
        surfaces: dict[str, tuple[str, str]] = {}
        rows_of: dict[tuple[str, str], list[int]] = {}
        for index, row in enumerate(self.forms):
            self._check_row(index, row)
            for value in self.values:
                form = row[value]
                rows_of.setdefault((value, form), []).append(index)
                for variant in _variants(form):
                    known = surfaces.setdefault(variant, (value, form))
                    if known[0] != value:
                        raise InterventionError(
                            f"{self.origin}: forms[{index}].{value}: {form!r} is also a form of "
                            f"{known[0]!r} (as {known[1]!r}); a form must belong to one value"
                        )
        for (value, form), indices in rows_of.items():
            if all(_WHEN in self.forms[index] for index in indices):
                raise InterventionError(
                    f"{self.origin}: forms[{indices[0]}].{value}: {form!r} is only in rows "
                    f"with `when`, so it has no counterpart where the condition fails; add a "
                    f"row without `when` for it"
                )
        object.__setattr__(self, "_surfaces", surfaces)
        object.__setattr__(self, "_rows_of", {key: tuple(rows) for key, rows in rows_of.items()})
        object.__setattr__(self, "_pattern", _compile(surfaces))

    @classmethod
    def load(cls, source: str | Path, *, factor: str) -> RewriteRules:
        """Read rules from `builtin:NAME` or a YAML rule file, for the factor named `factor`.

        Raises InterventionError naming the file, the key and the bad value.
        """
        origin, text = _read(source)
        import yaml  # only loading reads YAML; importing interventions stays cheap

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise InterventionError(f"{origin}: not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise InterventionError(
                f"{origin}: a rule file is a mapping with keys `values` and `forms` (and "
                f"optionally `factor`, `function_words`); got {type(data).__name__}"
            )
        for key in data:
            if key not in _FILE_KEYS:
                raise InterventionError(
                    f"{origin}: unknown key {key!r}{_closest(str(key), _FILE_KEYS)}; the keys are {list(_FILE_KEYS)}"
                )
        for key in ("values", "forms"):
            if key not in data:
                raise InterventionError(f"{origin}: the key `{key}` is missing")
        if "factor" in data and data["factor"] != factor:
            raise InterventionError(
                f"{origin}: factor: the rules are written for {data['factor']!r}, but were "
                f"loaded for factor {factor!r}; give factor {factor!r} its own rules"
            )
        values = _strings(data["values"], f"{origin}: values")
        words = _strings(data.get("function_words", []), f"{origin}: function_words")
        rows = data["forms"]
        if not isinstance(rows, list) or not rows:
            raise InterventionError(f"{origin}: forms: expected a non-empty list of rows (value -> form), got {rows!r}")
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                raise InterventionError(
                    f"{origin}: forms[{index}]: a row maps each value to its form, e.g. "
                    f"{{{', '.join(f'{v}: ...' for v in values)}}}; got {row!r}"
                )
        return cls(factor, values, tuple(rows), function_words=frozenset(words), origin=origin)

    def locate(self, text: str) -> dict[str, tuple[tuple[int, int], ...]]:
        """Each value's character spans `[start, end)` in `text`, for every value of the rules."""
        found: dict[str, list[tuple[int, int]]] = {value: [] for value in self.values}
        for match in self._matches(text):
            found[match.value].append((match.start, match.end))
        return {value: tuple(spans) for value, spans in found.items()}

    def rewrite(self, text: str, *, source: str, target: str) -> Rewrite:
        """do(factor=target) of `text`, a document annotated factor=source.

        Every form of `source` is replaced by its counterpart in `target`; nothing else
        changes (forms of other values stay: they are about someone else, "she told him").
        Raises RewriteError: `unknown_value` (a value the rules do not know),
        `not_located` (no form of any value appears), `value_mismatch` (only forms of
        other values appear: the annotation disagrees with the text).
        """
        for role, value in (("source", source), ("target", target)):
            if value not in self.values:
                raise RewriteError(
                    "unknown_value",
                    f"{self.factor}: {role} value {value!r} is not one of the values "
                    f"{list(self.values)} of the rules {self.origin}; name it as the rules do",
                )
        matches = self._matches(text)
        own = [match for match in matches if match.value == source]
        if not own:
            others = sorted({match.value for match in matches}, key=self.values.index)
            if others:
                raise RewriteError(
                    "value_mismatch",
                    f"{self.factor}: the text {_shorten(text)} is annotated {source!r} but "
                    f"shows only forms of {others}; check the annotation",
                )
            raise RewriteError(
                "not_located",
                f"{self.factor}: no form of any of the values {list(self.values)} appears "
                f"in the text {_shorten(text)}; add its wording to the rules {self.origin}",
            )
        pieces: list[str] = []
        spans: list[tuple[int, int]] = []
        position = length = 0
        for match in own:
            form = self._counterpart(text, match, target)
            pieces += [text[position : match.start], form]
            length += match.start - position
            spans.append((length, length + len(form)))
            length += len(form)
            position = match.end
        pieces.append(text[position:])
        return Rewrite(
            factor=self.factor,
            source=source,
            target=target,
            original=RenderedText(text, {self.factor: tuple((m.start, m.end) for m in own)}),
            rewritten=RenderedText("".join(pieces), {self.factor: tuple(spans)}),
        )

    def _matches(self, text: str) -> list[_Match]:
        """Every form found in `text`, left to right, the longest at each position."""
        return [
            _Match(found.start(), found.end(), *self._surfaces[" ".join(found.group().split())])
            for found in self._pattern.finditer(text)
        ]

    def _counterpart(self, text: str, match: _Match, target: str) -> str:
        """The target value's form for one match, from the first row that applies, in its case."""
        matched = text[match.start : match.end]
        if target == match.value:
            return matched
        rows = (self.forms[index] for index in self._rows_of[(match.value, match.form)])
        row = next(  # a row without `when` always applies (checked at construction)
            row for row in rows if row.get(_WHEN) != "before_noun" or self._before_noun(text, match.end)
        )
        return _cased(row[target], " ".join(matched.split()), match.form, _sentence_start(text, match.start))

    def _before_noun(self, text: str, end: int) -> bool:
        """Whether a word that is not a function word follows `end` (no blank line between)."""
        following = _NEXT_WORD.match(text, end)
        return following is not None and following.group(1).lower() not in self.function_words

    def _check_values(self) -> None:
        if len(self.values) < 2 or len(set(self.values)) != len(self.values):
            raise InterventionError(
                f"{self.origin}: values: expected at least two distinct values, got {list(self.values)}"
            )
        if _WHEN in self.values:
            raise InterventionError(
                f"{self.origin}: values: {_WHEN!r} is the key of a row's condition and cannot "
                "be a value; rename the value"
            )

    def _check_row(self, index: int, row: Mapping[str, Any]) -> None:
        where = f"{self.origin}: forms[{index}]"
        unknown = [key for key in row if key not in (*self.values, _WHEN)]
        if unknown:
            raise InterventionError(
                f"{where}: {unknown[0]!r} is not a value{_closest(str(unknown[0]), self.values)}; "
                f"the values are {list(self.values)} (and `{_WHEN}` for a condition)"
            )
        missing = [value for value in self.values if value not in row]
        if missing:
            raise InterventionError(
                f"{where}: no form for {missing}; every row says the same thing in each of "
                f"the values {list(self.values)}"
            )
        if _WHEN in row and row[_WHEN] not in _CONDITIONS:
            raise InterventionError(
                f"{where}.{_WHEN}: {row[_WHEN]!r} is not a condition; the conditions are {list(_CONDITIONS)}"
            )
        for value in self.values:
            form = row[value]
            if not isinstance(form, str) or not form.strip() or form != form.strip():
                raise InterventionError(
                    f"{where}.{value}: {form!r} is not a form; a form is non-empty text "
                    "without surrounding whitespace (quote it if YAML read it as a boolean or "
                    "a number)"
                )


@dataclass(frozen=True)
class Rewrite:
    """A document and its rewrite to do(factor=target), with the spans that differ.

    `original.spans[factor]` are the replaced forms, `rewritten.spans[factor]` the forms put
    in, in the same order. Outside them the two texts are identical character for
    character (checked at construction: RewriteError `outside_spans` otherwise), so the
    pair aligns as two renders of one template.
    """

    factor: str
    source: str
    target: str
    original: RenderedText
    rewritten: RenderedText

    def __post_init__(self) -> None:
        before = _outside(self.original, self.factor)
        after = _outside(self.rewritten, self.factor)
        if before is None or after is None or before != after:
            raise RewriteError(
                "outside_spans",
                f"{self.factor}: the rewrite of {_shorten(self.original.text)} from "
                f"{self.source!r} to {self.target!r} changes text outside the {self.factor} "
                f"spans (giving {_shorten(self.rewritten.text)}); the rules must not touch it",
            )

    def carry(self, spans: Mapping[str, Sequence[tuple[int, int]]]) -> dict[str, tuple[tuple[int, int], ...]]:
        """Other slots' spans in the original, moved to where the same characters lie in the rewritten text.

        So a rewritten document keeps the spans of every annotated factor, as evidence needs;
        this rewrite's own factor takes its inserted spans. A span that overlaps a replaced
        form has no counterpart and raises RewriteError `outside_spans`.
        """
        replaced = self.original.spans[self.factor]
        inserted = self.rewritten.spans[self.factor]

        def moved(start: int, end: int, name: str) -> tuple[int, int]:
            shift = 0
            for (old_start, old_end), (_, new_end) in zip(replaced, inserted, strict=True):
                if old_start < end and start < old_end:
                    raise RewriteError(
                        "outside_spans",
                        f"{name} at [{start}, {end}) overlaps the {self.factor} form at [{old_start}, {old_end}) "
                        f"in {_shorten(self.original.text)}; the two factors' words must not overlap",
                    )
                if old_end <= start:
                    shift = new_end - old_end
            return start + shift, end + shift

        carried = {
            name: tuple(moved(start, end, name) for start, end in found)
            for name, found in spans.items()
            if name != self.factor
        }
        return {**carried, self.factor: tuple(inserted)}


def _outside(text: RenderedText, factor: str) -> tuple[str, ...] | None:
    """The pieces of `text` between `factor`'s spans; None when the spans are out of order."""
    pieces = []
    position = 0
    for start, end in text.spans.get(factor, ()):
        if not position <= start <= end <= len(text.text):
            return None
        pieces.append(text.text[position:start])
        position = end
    pieces.append(text.text[position:])
    return tuple(pieces)


def _read(source: str | Path) -> tuple[str, str]:
    """(origin, text) of a rule source: `builtin:NAME` or a file path."""
    if isinstance(source, str) and source.startswith("builtin:"):
        lexicons = resources.files("interventions") / "lexicons"
        names = sorted(entry.name.removesuffix(".yaml") for entry in lexicons.iterdir() if entry.name.endswith(".yaml"))
        name = source.removeprefix("builtin:")
        if name not in names:
            raise InterventionError(
                f"unknown builtin lexicon {source!r}; the builtin lexicons are "
                f"{[f'builtin:{known}' for known in names]}, or give a rule file path"
            )
        return source, (lexicons / f"{name}.yaml").read_text(encoding="utf-8")
    path = Path(source)
    try:
        return str(path), path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InterventionError(
            f"rule file {str(path)!r} does not exist; give an existing YAML file or builtin:NAME (builtin:sex)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InterventionError(f"rule file {str(path)!r} cannot be read: {error}") from None


def _strings(items: Any, where: str) -> tuple[str, ...]:
    """A YAML list of strings as a tuple, or an error naming the first bad item."""
    if not isinstance(items, list):
        raise InterventionError(f"{where}: expected a list of strings, got {items!r}")
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise InterventionError(
                f"{where}[{index}]: {item!r} is not a string; quote it (YAML reads yes, no, "
                "on, off as booleans and bare digits as numbers)"
            )
    return tuple(items)


def _closest(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _variants(form: str) -> tuple[str, ...]:
    """The spellings a form matches (whitespace collapsed): see the module docstring."""
    form = " ".join(form.split())
    if form != form.lower():
        return (form,)
    return tuple(dict.fromkeys((form, _capitalised(form), _title(form), form.upper())))


def _compile(surfaces: Mapping[str, tuple[str, str]]) -> re.Pattern[str]:
    """One pattern for every spelling, bounded where a spelling starts or ends with a word
    character, any whitespace between its words.

    The spellings form a trie, so matching costs time in the text's length, not in the
    number of spellings; a spelling's continuations are tried before it ends, so the
    longest spelling at a position wins.
    """
    words = [surface for surface in surfaces if _WORD.match(surface)]
    others = [surface for surface in surfaces if not _WORD.match(surface)]
    branches = [r"(?<![\w-])" + _trie(words)] if words else []
    return re.compile("|".join(branches + ([_trie(others)] if others else [])))


def _trie(spellings: list[str]) -> str:
    root: dict[str, Any] = {}
    for spelling in spellings:
        node = root
        for char in spelling:
            node = node.setdefault(char, {})
        node[""] = spelling  # the key "" marks where a spelling ends
    return _branches(root)


def _branches(node: dict[str, Any]) -> str:
    branches = [(r"\s+" if char == " " else re.escape(char)) + _branches(child) for char, child in node.items() if char]
    if "" in node:
        branches.append(r"(?![\w-])" if _WORD.match(node[""][-1]) else "")
    return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"


def _cased(form: str, matched: str, written: str, sentence_start: bool) -> str:
    """`form` in the case that `matched` shows for the rules' `written` form."""
    if written != written.lower():
        return _capitalised(form) if sentence_start else form
    if matched == written:
        return form
    if matched == _capitalised(written):
        return _capitalised(form)
    if matched == written.upper():
        return form.upper()
    return _title(form)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _title(text: str) -> str:
    return " ".join(_capitalised(word) for word in text.split(" "))


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip(" \t")
    return not before or before[-1] in _SENTENCE_END


def _shorten(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
