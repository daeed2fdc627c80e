"""The built-in models' names and packaged folders, known to the config stage so a config can name one.

Stage: config. May import experiments.errors.

The folders are package data of `experiments.demo`, found without importing it (the demo
stage trains them and sits above this one): a chat prompt's template is read from a
built-in model's tokenizer while the config compiles.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from experiments.errors import ConfigError

BUILTIN_PREFIX = "builtin:"
BUILTIN_NAMES = ("triage-demo", "triage-demo-fair", "decisions-chat")
"""Every built-in model, as `builtin:NAME` names it."""


def model_folder(name: str) -> Path:
    """The packaged folder of the built-in model `name` (weights, tokenizer and training.json)."""
    return Path(str(files("experiments") / "demo" / "models" / name))


def resolve_model_path(model_id: str) -> str:
    """A local folder for `model_id`: a built-in name gives its packaged folder, other ids pass through.

    The built-in models ship trained, so nothing is trained or downloaded here.
    """
    if not model_id.startswith(BUILTIN_PREFIX):
        return model_id
    name = model_id.removeprefix(BUILTIN_PREFIX)
    if name not in BUILTIN_NAMES:
        known = ", ".join(BUILTIN_PREFIX + known for known in BUILTIN_NAMES)
        raise ConfigError(f"unknown built-in model {model_id!r}; built-in models: {known}", path="model.id")
    return str(model_folder(name))
