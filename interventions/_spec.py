"""`ModelSpec`: where a model lives and how to load it; torch-free, so configs compile without torch."""

from __future__ import annotations

import re
from dataclasses import KW_ONLY, dataclass
from typing import Literal

from interventions.errors import ModelLoadError

Task = Literal["causal-lm", "sequence-classifier"]
DType = Literal["auto", "float32", "float16", "bfloat16"]

_TASKS = ("causal-lm", "sequence-classifier")
DTYPE_NAMES = ("float32", "float16", "bfloat16")
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model lives and how to load it.

    `path` is a local folder or a hub id. `device` is auto | cpu | cuda | cuda:N (auto picks
    CUDA when available). `dtype` auto means float32 on CPU and the checkpoint's dtype on CUDA.
    Remote code runs only when `trust_remote_code` is set.
    """

    path: str
    _: KW_ONLY
    task: Task = "causal-lm"
    device: str = "auto"
    dtype: DType = "auto"
    trust_remote_code: bool = False
    revision: str | None = None

    def __post_init__(self) -> None:
        if self.task not in _TASKS:
            raise ModelLoadError(f"model {self.path!r}: task {self.task!r} is not one of {list(_TASKS)}")
        if self.dtype != "auto" and self.dtype not in DTYPE_NAMES:
            raise ModelLoadError(f"model {self.path!r}: dtype {self.dtype!r} is not one of {['auto', *DTYPE_NAMES]}")
        if not _DEVICE_PATTERN.fullmatch(self.device):
            raise ModelLoadError(f"model {self.path!r}: device {self.device!r} is not one of auto, cpu, cuda or cuda:N")
