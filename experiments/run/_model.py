"""Loading the run's model and recording which model it was in the manifest.

Stage: run. May import interventions, experiments.errors, the config and demo stages.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from experiments.config import Experiment
from experiments.demo import resolve_model_path
from experiments.run._progress import Progress, stage
from interventions import ModelAdapter


def load_model(experiment: Experiment, manifest: dict[str, Any], progress: Progress | None) -> ModelAdapter:
    """The config's model (a built-in one trained on first use); its id, path, fingerprint, device, dtype go into `manifest`."""
    spec = experiment.model_spec
    path = resolve_model_path(spec.path, progress=stage(progress, "training the demo model"))
    adapter = ModelAdapter.load(replace(spec, path=path))
    manifest.update(
        model_id=experiment.config.model.id,
        model_path=adapter.spec.path,
        model_fingerprint=adapter.fingerprint(),
        device=str(adapter.device),
        dtype=str(adapter.dtype).removeprefix("torch."),
    )
    return adapter
