"""Exceptions raised by the experiments layer.

Stage: errors. Imports nothing of Paribus; every stage may import it.

    ValueError
      ├── ConfigError      a config file or value breaks a rule; carries the YAML path
      ├── NotEstimable     one part of a run has nothing to compute it from (the run records why, goes on)
      └── RunFolderError   a run folder is not what it must be: not a run, changed after it was
                           written, held by another writer, or written by another model
    RuntimeError
      └── RunError         a valid run could not complete (model, run folder)
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config breaks a rule. `path` is the dotted YAML location (e.g. `effects[0].treatment`)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.reason = message


class NotEstimable(ValueError):
    """One part of a valid run (a patching sweep, the evidence) has no units to work on; the message says why.

    The pipeline records the reason where that part's results would be and carries on.
    """


class RunFolderError(ValueError):
    """A run folder cannot be used as asked; the message names the folder and what is wrong with it (exit status 2)."""


class RunError(RuntimeError):
    """A run could not be carried out; the message says what was kept and where."""
