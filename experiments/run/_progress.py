"""Progress reporting shared by the run's long stages.

Stage: run. Imports nothing of Paribus: every later stage reports through it.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called as long work advances."""

Report = Callable[[int, int], None]
"""report(done, total) for one stage."""


def stage(progress: Progress | None, name: str) -> Report | None:
    """The reporter of one named stage, or None when nobody listens."""
    return None if progress is None else (lambda done, total: progress(name, done, total))


def counting(report: Report | None, total: int) -> Callable[[int], None] | None:
    """Turn `advance(k)` increments (as the engines call them) into `report(done, total)`."""
    if report is None:
        return None
    done = 0

    def advance(finished: int) -> None:
        nonlocal done
        done += finished
        report(done, total)

    return advance
