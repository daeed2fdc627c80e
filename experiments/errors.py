"""Exceptions raised by the experiments layer.

Stage: errors. Imports nothing of Paribus; every stage may import it.

    ValueError
      ├── ConfigError      a config file or value breaks a rule; carries the YAML path
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


class RunFolderError(ValueError):
    """A run folder cannot be used as asked; the message names the folder and what is wrong with it (exit status 2)."""


class RunError(RuntimeError):
    """A run could not be carried out; the message says what was kept and where."""
