"""Exceptions raised by the `graphs` package."""

from __future__ import annotations

__all__ = ["GraphError"]


class GraphError(ValueError):
    """Invalid causal graph, structural model, or request made of them.

    `path` locates the problem inside the declaration (e.g. ``"edges[2]"`` or
    ``"insurance.distribution.young"``), or is None; ``str(err)`` is only the
    message, so callers can prefix their own location.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path
