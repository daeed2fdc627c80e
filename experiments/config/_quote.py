"""Quoting user values in error messages at a bounded length, so a huge value cannot flood a terminal or a log.

Stage: config. Imports nothing of Paribus.
"""

from __future__ import annotations

from typing import Any

QUOTE_LIMIT = 200
"""Characters of a value an error message shows."""
MESSAGE_LIMIT = 2_000
"""Characters of a message written elsewhere that an error passes on."""


def quoted(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)`, cut after `limit` characters with "… (N characters)" (the length of a string, else of its repr).

    >>> quoted("x" * 1000, limit=6)
    "'xxxx… (1,000 characters)"
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    length = len(value) if isinstance(value, str) else len(text)
    return f"{text[: limit - 1]}… ({length:,} characters)"


def shortened(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """A message written elsewhere (graphs, interventions, a parser), its middle cut when it is over `limit`.

    The start names the path and the end usually states the fix, so both are kept.
    """
    if len(message) <= limit:
        return message
    head, tail = message[: limit * 3 // 5], message[-(limit // 5) :]
    return f"{head} … ({len(message) - len(head) - len(tail):,} characters cut) … {tail}"


def listed(items: Any, limit: int = QUOTE_LIMIT) -> str:
    """Items joined by ", ", cut after `limit` characters with "… (N in all)"."""
    items = [str(item) for item in items]
    text = ", ".join(items)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(items):,} in all)"
