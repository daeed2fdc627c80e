"""CSV cells a spreadsheet will not run as formulas, read back by Paribus as the run computed them.

Stage: run. Imports nothing of Paribus.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a CSV cell as a formula (OWASP, CSV injection)."""


def neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells (and column names) that a spreadsheet would run are prefixed with `'`.

    Cells starting with one of `FORMULA_STARTS` get a leading `'`, as OWASP advises; so do
    cells that already start with `'`, so that `read_table` can undo the prefix exactly.
    Numbers are untouched.
    """
    text = [
        column
        for column in frame.columns
        if pd.api.types.is_object_dtype(frame[column])
        or pd.api.types.is_string_dtype(frame[column])
        or isinstance(frame[column].dtype, pd.CategoricalDtype)
    ]
    copy = frame.rename(columns=_quoted)
    for column in text:
        copy[_quoted(column)] = frame[column].map(_quoted)
    return copy


def write_csv(frame: pd.DataFrame, handle: BinaryIO) -> None:
    """`frame` as CSV into a binary handle, its text cells neutralised (`neutralised`)."""
    text = neutralised(frame)
    # pandas leaves a field holding a carriage return unquoted, which ends the row there for a reader.
    quoting = csv.QUOTE_NONNUMERIC if _holds_carriage_return(text) else csv.QUOTE_MINIMAL
    text.to_csv(handle, index=False, quoting=quoting)


def _holds_carriage_return(frame: pd.DataFrame) -> bool:
    cells = [*frame.columns, *(value for column in frame.columns for value in frame[column])]
    return any(isinstance(value, str) and "\r" in value for value in cells)


def _quoted(value: Any) -> Any:
    return f"'{value}" if isinstance(value, str) and value.startswith((*FORMULA_STARTS, "'")) else value


def _unquoted(value: Any) -> Any:
    return value[1:] if isinstance(value, str) and value.startswith("'") else value


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """A table of a run folder as the run computed it: a CSV's neutralised formula prefixes are undone."""
    if not name.endswith(".csv"):
        return pd.read_parquet(folder / name)
    frame = pd.read_csv(folder / name).rename(columns=_unquoted)
    for column in frame.columns:
        if pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(_unquoted)
    return frame
