"""`paribus --help` and `paribus validate` start without torch; the packages they import load names lazily."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers")

_CLI_SCRIPT = """
import json, sys
from typer.testing import CliRunner

heavy = {heavy!r}
loaded = {{}}
import experiments.cli
loaded["import"] = [name for name in heavy if name in sys.modules]
runner = CliRunner()
for step, args in (("--help", ["--help"]), ("validate", ["validate", "experiments/examples/triage.yaml"])):
    result = runner.invoke(experiments.cli.app, args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    loaded[step] = [name for name in heavy if name in sys.modules]
print(json.dumps(loaded))
"""


def test_help_and_validate_never_import_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CLI_SCRIPT.format(heavy=HEAVY)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"import": [], "--help": [], "validate": []}


@pytest.mark.parametrize("package", ["interventions", "causal", "experiments"])
def test_lazy_public_names_resolve_to_their_modules(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module._MODULE_OF) == set(module.__all__)
    assert set(module.__all__) <= set(dir(module))
    for name in module.__all__:
        source = importlib.import_module(f"{package}.{module._MODULE_OF[name]}")
        assert getattr(module, name) is getattr(source, name), name
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        module.missing  # noqa: B018


def test_from_import_works_for_every_public_name() -> None:
    script = "\n".join(
        f"from {package} import {', '.join(importlib.import_module(package).__all__)}"
        for package in ("interventions", "causal", "experiments")
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True)
