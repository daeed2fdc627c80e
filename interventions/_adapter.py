"""Loading a HuggingFace model and tokenizer from a `ModelSpec`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from interventions._spec import DTYPE_NAMES, DType, ModelSpec
from interventions.errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
# What transformers raises for a checkpoint it cannot read (missing files, bad config,
# unknown architecture, offline hub id); re-raised as ModelLoadError naming the path.
_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError)


@dataclass(frozen=True, eq=False)
class ModelAdapter:
    """A loaded model in eval mode with its tokenizer (right padding, pad token set)."""

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

        device = _resolve_device(spec)
        source = _resolve_source(spec.path)
        model_class = {
            "causal-lm": AutoModelForCausalLM,
            "sequence-classifier": AutoModelForSequenceClassification,
        }[spec.task]
        options = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **options)
            model = model_class.from_pretrained(source, dtype=_load_dtype(spec.dtype, device), **options).to(device)
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
        return cls(spec=spec, model=model, tokenizer=tokenizer, device=device, dtype=model.dtype)

    def fingerprint(self) -> str:
        """SHA-256 hex of the parameters (name, dtype, shape, bytes) and the tokenizer vocab.

        Identifies the exact weights a run measured: equal for two loads of one checkpoint,
        different once any weight changes.
        """
        digest = hashlib.sha256()
        for name, parameter in sorted(self.model.named_parameters(), key=lambda item: item[0]):
            flat = parameter.detach().reshape(-1).cpu()
            digest.update(f"{name}|{flat.dtype}|{tuple(parameter.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy())
        vocab = sorted(self.tokenizer.get_vocab().items())
        digest.update(json.dumps(vocab, ensure_ascii=False).encode())
        return digest.hexdigest()


def _resolve_device(spec: ModelSpec) -> torch.device:
    """The torch device for `spec.device`; CUDA must be present when asked for."""
    name = spec.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cpu":
        return device
    if not torch.cuda.is_available():
        raise ModelLoadError(
            f"model {spec.path!r}: device {spec.device!r} asked for but CUDA is not "
            "available; use device 'cpu' or 'auto'"
        )
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= count:
        raise ModelLoadError(
            f"model {spec.path!r}: device {spec.device!r} does not exist; this machine has "
            f"{count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        )
    return torch.device("cuda", index)


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


def _load_dtype(name: DType, device: torch.device) -> torch.dtype | str:
    """The dtype argument for from_pretrained: half precision only when asked for on CPU."""
    if name != "auto":
        return _DTYPES[name]
    return "auto" if device.type == "cuda" else torch.float32
