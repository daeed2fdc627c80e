"""Lookup of declared names with a 'did you mean' hint for unknown ones."""

from __future__ import annotations

import difflib
from collections.abc import Collection

from graphs.errors import GraphError


def suggestion(name: object, known: Collection[str]) -> str:
    """Return "; did you mean 'x'?" for the closest known name, or "" when none is close."""
    matches = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def check_known(name: object, known: Collection[str], *, kind: str, path: str | None = None) -> str:
    """Return `name` if it is one of `known`, else raise GraphError naming the known names."""
    if isinstance(name, str) and name in known:
        return name
    listed = ", ".join(known)
    raise GraphError(f"unknown {kind} {name!r}{suggestion(name, known)} (known: {listed})", path=path)
