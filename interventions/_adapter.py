"""Loading a HuggingFace model and tokenizer from a `ModelSpec`."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from interventions._spec import DTYPE_NAMES, ModelSpec
from interventions.errors import ModelLoadError

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
# What transformers raises for a checkpoint it cannot read (missing files, bad config,
# unknown architecture, offline hub id); re-raised as ModelLoadError naming the path.
_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError)


@dataclass(frozen=True, eq=False)
class ModelAdapter:
    """A loaded model in eval mode with its tokenizer (right padding, pad token set).

    `device` is where inputs go: the device of the input embeddings (for a model split by a
    device_map, the device they run on; accelerate's hooks carry activations between devices).
    """

    spec: ModelSpec
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def load(cls, spec: ModelSpec) -> ModelAdapter:
        """Load tokenizer and model as `spec` says; raises ModelLoadError naming the cause.

        Weights load from safetensors when the checkpoint has them (the transformers default).
        A tokenizer without a pad token pads with its eos token: padding is right-sided and
        masked, so the pad id never reaches a measured position.
        """
        from transformers import (
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        source = _resolve_source(spec.path)
        model_class = {
            "causal-lm": AutoModelForCausalLM,
            "sequence-classifier": AutoModelForSequenceClassification,
        }[spec.task]
        options = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
        device = None if spec.device_map is not None else _resolve_device(spec)
        placement = _placement(spec, device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **options)
            model = model_class.from_pretrained(source, dtype=_load_dtype(spec, device), **placement, **options)
            if "device_map" not in placement:
                model = model.to(device)
        except _LOAD_ERRORS as error:
            raise ModelLoadError(f"cannot load {spec.task} model from {spec.path!r}: {error}") from error
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ModelLoadError(
                    f"tokenizer of {spec.path!r} has neither a pad nor an eos token; batching "
                    "needs one; add a pad token to the tokenizer"
                )
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        if model.config.pad_token_id is None:
            # Decoder-based sequence classifiers find each row's last token via this id.
            model.config.pad_token_id = tokenizer.pad_token_id
        model.eval()
        return cls(spec=spec, model=model, tokenizer=tokenizer, device=_input_device(model), dtype=model.dtype)

    def fingerprint(self) -> str:
        """SHA-256 hex of the parameters (name, dtype, shape, bytes) and the tokenizer vocab.

        Identifies the exact weights a run measured: equal for two loads of one checkpoint,
        however they are placed, different once any weight changes.
        """
        digest = hashlib.sha256()
        for name, parameter in sorted(self.model.named_parameters(), key=lambda item: item[0]):
            flat = _values(self.model, name, parameter).detach().reshape(-1).cpu()
            digest.update(f"{name}|{flat.dtype}|{tuple(parameter.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy())
        vocab = sorted(self.tokenizer.get_vocab().items())
        digest.update(json.dumps(vocab, ensure_ascii=False).encode())
        return digest.hexdigest()


def _placement(spec: ModelSpec, device: torch.device | None) -> dict[str, Any]:
    """from_pretrained's placement options: none for a model moved to `device` after loading.

    A split or quantized model is placed while loading, by accelerate, once the packages
    and the CUDA devices it needs are checked.
    """
    placement: dict[str, Any] = {}
    if spec.quantization is not None:
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"model {spec.path!r}: quantization {spec.quantization!r} runs on CUDA (bitsandbytes) but CUDA is "
                "not available; load without quantization (dtype bfloat16 halves the memory of float32)"
            )
        _require(spec, "bitsandbytes", f"quantization {spec.quantization!r}")
        _require(spec, "accelerate", f"quantization {spec.quantization!r}")
        from transformers import BitsAndBytesConfig

        bits = {"load_in_8bit": True} if spec.quantization == "8bit" else {"load_in_4bit": True}
        placement["quantization_config"] = BitsAndBytesConfig(**bits)
        if device is not None:
            placement["device_map"] = {"": str(device)}
    if spec.device_map is None:
        return placement
    _require(spec, "accelerate", "device_map")
    placement["device_map"] = (
        "auto"
        if spec.device_map == "auto"
        else {
            module: str(_cuda_device(spec, where)) if where.startswith("cuda") else where
            for module, where in spec.device_map
        }
    )
    if spec.max_memory is not None:
        placement["max_memory"] = dict(spec.max_memory)
    if spec.offload_folder is not None:
        placement["offload_folder"] = spec.offload_folder
    return placement


def _require(spec: ModelSpec, package: str, feature: str) -> None:
    """ModelLoadError naming `feature` and how to install `package` when it is missing."""
    if importlib.util.find_spec(package) is None:
        raise ModelLoadError(
            f"model {spec.path!r}: {feature} needs the {package} package, which is not installed; "
            f"install it with pip install {package}"
        )


def _resolve_device(spec: ModelSpec) -> torch.device:
    """The torch device for `spec.device`; CUDA must be present when asked for."""
    name = spec.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device("cpu") if name == "cpu" else _cuda_device(spec, name)


def _cuda_device(spec: ModelSpec, name: str) -> torch.device:
    """The CUDA device `name` (cuda or cuda:N) with its index; ModelLoadError when it is absent."""
    if not torch.cuda.is_available():
        raise ModelLoadError(
            f"model {spec.path!r}: device {name!r} asked for but CUDA is not available; use device 'cpu' or 'auto'"
        )
    device = torch.device(name)
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= count:
        raise ModelLoadError(
            f"model {spec.path!r}: device {name!r} does not exist; this machine has "
            f"{count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        )
    return torch.device("cuda", index)


def _input_device(model: nn.Module) -> torch.device:
    """Where inputs go: where the input embeddings run (accelerate's hook on a split model), else their weights."""
    embeddings = model.get_input_embeddings()
    device = getattr(getattr(embeddings, "_hf_hook", None), "execution_device", None)
    return torch.device(embeddings.weight.device if device is None else device)


def _values(model: nn.Module, name: str, parameter: torch.Tensor) -> torch.Tensor:
    """A parameter's values; one offloaded by accelerate (left on the meta device) read from its store."""
    if parameter.device.type != "meta":
        return parameter
    owner, _, leaf = name.rpartition(".")
    return model.get_submodule(owner)._hf_hook.weights_map[leaf].to(parameter.dtype)


def _resolve_source(path: str) -> str:
    """The folder to load from, or the hub id unchanged.

    A path that cannot be a hub id ("org/name") must be an existing folder, so a typo in a
    local path is reported as such instead of as a failed hub download.
    """
    folder = Path(path).expanduser()
    if folder.is_dir():
        return str(folder)
    if folder.exists():
        raise ModelLoadError(f"model path {path!r} is a file; give the model's folder")
    if path.startswith(("/", ".", "~")) or path.count("/") > 1 or "\\" in path:
        raise ModelLoadError(
            f"model folder {path!r} does not exist; check the path (relative paths are taken "
            "from the working directory)"
        )
    return path


def _load_dtype(spec: ModelSpec, device: torch.device | None) -> torch.dtype | str:
    """The dtype argument for from_pretrained: the checkpoint's own only on CUDA, else float32 unless asked for.

    `device` is None for a model split by a device_map, which counts as on CUDA when it maps
    any module there ("auto" fills the GPUs first).
    """
    if spec.dtype != "auto":
        return _DTYPES[spec.dtype]
    if device is not None:
        on_cuda = device.type == "cuda"
    elif spec.device_map == "auto":
        on_cuda = torch.cuda.is_available()
    else:
        on_cuda = any(where.startswith("cuda") for _, where in spec.device_map)
    return "auto" if on_cuda else torch.float32
