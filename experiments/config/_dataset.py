"""Reading real documents and human-edited pairs: keep the good rows, report the bad ones by reason.

Stage: config. May import experiments.errors and the config stage.

A row is dropped for the first problem found (in the order id, text, each factor as
declared, then an id an earlier kept row has); `dropped` records its table, row number, id, reason, column and value so
a reviewer can fix the data. Problems with the file itself (unreadable, a missing
column) and a table with no good row raise ConfigError naming the YAML path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.config._quote import QUOTE_LIMIT, quoted, shortened
from experiments.config._schema import DataConfig
from experiments.errors import ConfigError

DROP_COLUMNS = ("table", "row", "id", "reason", "column", "value")
PAIR_COLUMNS = ("id", "original_id", "factor", "from", "to", "text")
_EXAMPLES = 5
_EXAMPLE_LIMIT = 60
"""Characters of each example id or value a message shows (five of each)."""


@dataclass(frozen=True)
class Table:
    """Kept rows of one input table and the rows dropped from it, with why."""

    frame: pd.DataFrame
    dropped: pd.DataFrame
    n_rows: int
    left_out: tuple[str, ...] = ()
    """Ids of good rows that `data.where` or `data.limit` left out (not bad: not asked for)."""

    def counts(self) -> dict[str, int]:
        """Dropped rows per reason."""
        return {str(reason): int(count) for reason, count in self.dropped["reason"].value_counts(sort=False).items()}

    def record(self) -> dict[str, Any]:
        """What the manifest says about this table."""
        record = {"rows": self.n_rows, "kept": len(self.frame), "dropped": self.counts()}
        return {**record, "left_out": len(self.left_out)} if self.left_out else record


def load_documents(data: DataConfig, path: Path, values: Mapping[str, Sequence[str]]) -> Table:
    """The annotated documents: columns doc_id, text, one per annotated factor (its value), and label if given.

    `values` holds each factor's declared values; annotations are read as stripped strings.
    """
    raw = _read(path, "data.path")
    n_rows = len(raw)
    raw, left_out = _where(raw, data, path)
    columns = {
        "text": (data.text, "data.text"),
        **{name: (column, f"data.factors.{name}") for name, column in data.factors.items()},
    }
    if data.id is not None:
        columns["doc_id"] = (data.id, "data.id")
    if data.label is not None:
        columns["label"] = (data.label, "data.label")
    for column, yaml_path in columns.values():
        _require(raw, column, yaml_path, path)
    ids = _text(raw[data.id]) if data.id is not None else pd.Series(raw.index.astype(str), index=raw.index)
    frame = pd.DataFrame({"doc_id": ids, "text": raw[data.text].where(raw[data.text].notna(), "").astype(str)})
    checks = [("missing_id", data.id or "", ids.eq("")), ("empty_text", data.text, frame["text"].str.strip().eq(""))]
    for name, column in data.factors.items():
        annotation = _text(raw[column])
        frame[name] = annotation
        checks += [
            ("unannotated", column, annotation.eq("")),
            ("unknown_value", column, ~annotation.isin(list(values[name])) & annotation.ne("")),
        ]
    if data.label is not None:
        frame["label"] = raw[data.label]
    kept, dropped = _split("documents", frame, checks, raw, ids, data.id or "")
    table = Table(kept, dropped, n_rows)
    _check_kept(table, "data", data.on_bad_rows == "error")
    if data.limit is not None and data.limit < len(kept):
        chosen = np.sort(np.random.default_rng(data.seed).choice(len(kept), size=data.limit, replace=False))
        left_out += tuple(kept["doc_id"].drop(kept.index[chosen]))
        kept = kept.iloc[chosen].reset_index(drop=True)
    return Table(kept, dropped, n_rows, left_out)


def _where(raw: pd.DataFrame, data: DataConfig, path: Path) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The rows `data.where` keeps, and the ids of the rows it leaves out."""
    keep = pd.Series(True, index=raw.index)
    for column, wanted in data.where.items():
        _require(raw, column, f"data.where.{column}", path)
        keep &= _text(raw[column]).isin([wanted] if isinstance(wanted, str) else wanted)
    if not keep.any() and len(raw):
        raise ConfigError(f"keeps none of the {len(raw)} rows of {path}; check the columns' values", path="data.where")
    ids = _text(raw[data.id]) if data.id is not None and data.id in raw.columns else raw.index.astype(str)
    return raw[keep], tuple(pd.Series(ids, index=raw.index)[~keep])


def load_pairs(
    path: Path, documents: pd.DataFrame, values: Mapping[str, Sequence[str]], *, left_out: Sequence[str] = ()
) -> Table:
    """Human-edited pairs whose original is a kept document: columns PAIR_COLUMNS as strings.

    `values` holds every factor's declared values; when the edited factor is annotated,
    the pair's `from` must be the original's annotation. A pair whose original `data.where`
    or `data.limit` left out (`left_out`) is dropped as `original_left_out`, not as unknown.
    """
    raw = _read(path, "pairs.path")
    for column in PAIR_COLUMNS:
        _require(raw, column, "pairs.path", path)
    frame = pd.DataFrame({column: _text(raw[column]) for column in PAIR_COLUMNS})
    frame["text"] = raw["text"].where(raw["text"].notna(), "").astype(str)
    annotated = documents.set_index("doc_id")
    known = frame["original_id"].isin(annotated.index)
    original_value = pd.Series(
        [
            annotated.at[doc, factor] if ok and factor in annotated.columns else None
            for doc, factor, ok in zip(frame["original_id"], frame["factor"], known)
        ],
        index=frame.index,
    )
    in_domain = pd.Series(
        [
            frame.at[i, "from"] in values.get(factor, ()) and frame.at[i, "to"] in values.get(factor, ())
            for i, factor in frame["factor"].items()
        ],
        index=frame.index,
    )
    checks = [
        ("missing_id", "id", frame["id"].eq("")),
        ("empty_text", "text", frame["text"].str.strip().eq("")),
        ("original_left_out", "original_id", frame["original_id"].isin(list(left_out))),
        ("unknown_original", "original_id", ~known),
        ("unknown_factor", "factor", ~frame["factor"].isin(list(values))),
        ("unknown_value", "from", ~in_domain),
        ("same_value", "to", frame["from"].eq(frame["to"])),
        ("value_mismatch", "from", original_value.notna() & original_value.ne(frame["from"])),
    ]
    kept, dropped = _split("pairs", frame, checks, raw, frame["id"], "id")
    table = Table(kept, dropped, len(raw))
    _check_kept(table, "pairs", False)
    return table


def _read(path: Path, yaml_path: str) -> pd.DataFrame:
    """A table from .parquet, .csv or .jsonl; every cell of a text file is read as text."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            raw = pd.read_parquet(path)
        elif suffix == ".csv":
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        else:
            raw = pd.read_json(path, lines=True, dtype=False)
    except FileNotFoundError:
        raise ConfigError(f"data file {quoted(str(path))} does not exist", path=yaml_path) from None
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"data file {quoted(str(path))} cannot be read as {suffix[1:]}: {shortened(str(error), limit=QUOTE_LIMIT)}",
            path=yaml_path,
        ) from None
    if suffix == ".csv" and not isinstance(raw.index, pd.RangeIndex):
        # pandas reads a first row longer than the header as an index: every column would shift silently.
        raise ConfigError(
            f"data file {quoted(str(path))} cannot be read as csv: its first row has more cells than the header has "
            f"columns ({len(raw.columns)}); quote cells that hold commas",
            path=yaml_path,
        )
    return raw.reset_index(drop=True)


def _require(raw: pd.DataFrame, column: str, yaml_path: str, path: Path) -> None:
    if column not in raw.columns:
        raise ConfigError(
            f"column {quoted(column)} is not in {path.name}; its columns are {quoted(list(map(str, raw.columns)))}",
            path=yaml_path,
        )


def _text(column: pd.Series) -> pd.Series:
    """Cells as stripped strings; missing cells become ""."""
    return column.map(
        lambda cell: "" if cell is None or (isinstance(cell, float) and pd.isna(cell)) else str(cell).strip()
    )


def _split(
    table: str,
    frame: pd.DataFrame,
    checks: list[tuple[str, str, pd.Series]],
    raw: pd.DataFrame,
    ids: pd.Series,
    id_column: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kept rows, and one dropped record per bad row for its first failed check.

    Last, a good row whose id an earlier good row already has is dropped as a duplicate.
    """
    bad = pd.Series(False, index=frame.index)
    records: list[dict[str, Any]] = []

    def drop(reason: str, column: str, failed: pd.Series) -> None:
        for row in frame.index[failed & ~bad]:
            value = raw.at[row, column] if column in raw.columns else None
            records.append(
                {
                    "table": table,
                    "row": int(row),
                    "id": ids[row],
                    "reason": reason,
                    "column": column,
                    "value": None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value),
                }
            )
        bad[failed] = True

    for reason, column, failed in checks:
        drop(reason, column, failed)
    drop("duplicate_id", id_column, ids.where(~bad).duplicated() & ~bad)
    dropped = pd.DataFrame(records, columns=list(DROP_COLUMNS)).sort_values("row", kind="stable").reset_index(drop=True)
    return frame[~bad].reset_index(drop=True), dropped


def _check_kept(table: Table, section: str, strict: bool) -> None:
    """An error when no row is good, or (strict) when any row is bad; it names columns and example row ids."""
    if len(table.frame) and not (strict and len(table.dropped)):
        return
    lines = []
    for (reason, column), group in table.dropped.groupby(["reason", "column"], sort=False):
        examples = ", ".join(quoted(row_id, limit=_EXAMPLE_LIMIT) for row_id in group["id"].head(_EXAMPLES))
        values = sorted(set(group["value"].dropna()))[:_EXAMPLES]
        shown = ", ".join(quoted(value, limit=_EXAMPLE_LIMIT) for value in values)
        shown = f"; values [{shown}]" if reason == "unknown_value" else ""
        lines.append(
            f"{len(group)} row(s) {reason.replace('_', ' ')} in column {quoted(column)} (ids {examples}{shown})"
        )
    if not len(table.frame):
        head = f"no usable row among {table.n_rows}" if table.n_rows else "the file has no rows"
        fix = "fix the data or the column names"
    else:
        head = f"{len(table.dropped)} of {table.n_rows} rows are bad and on_bad_rows is error"
        fix = "fix them, or set data.on_bad_rows: drop to keep the good rows"
    raise ConfigError(f"{head}: " + "; ".join([*lines, fix]), path=section)
