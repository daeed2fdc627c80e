"""model.device_map, max_memory, offload_folder and quantization reach the model spec, checked before any run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from experiments import ConfigError, load_experiment
from tests.experiments._tiny_runs import tiny_config


def _load(tmp_path: Path, **model: object):
    data = tiny_config(Path("model"))
    data["model"] = {**data["model"], **model}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_experiment(path)


def test_a_split_model_reaches_the_spec_with_gpu_keys_as_indices_and_the_offload_folder_resolved(
    tmp_path: Path,
) -> None:
    experiment = _load(
        tmp_path,
        device="auto",
        device_map="auto",
        max_memory={"0": "20GiB", "cpu": "4GiB"},
        offload_folder="offload",
    )
    spec = experiment.model_spec
    assert spec.device_map == "auto"
    assert dict(spec.max_memory) == {0: "20GiB", "cpu": "4GiB"}
    assert spec.offload_folder == str((tmp_path / "offload").resolve())


def test_a_device_beside_a_device_map_is_a_config_error_naming_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^model: "):
        _load(tmp_path, device="cpu", device_map="auto")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a machine without CUDA gives")
def test_quantization_without_cuda_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.quantization: 4bit weights are loaded by bitsandbytes on CUDA"):
        _load(tmp_path, device="auto", quantization="4bit")
