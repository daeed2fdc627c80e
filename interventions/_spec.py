"""`ModelSpec`: where a model lives and how to load it; torch-free, so configs compile without torch."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Literal

from interventions.errors import ModelLoadError

Task = Literal["causal-lm", "sequence-classifier"]
DType = Literal["auto", "float32", "float16", "bfloat16"]
Quantization = Literal["8bit", "4bit"]
DeviceMap = Literal["auto"] | tuple[tuple[str, str], ...]
"""Where modules go: "auto" (fill the GPUs, then CPU memory, then disk) or (module, device) pairs."""
MaxMemory = tuple[tuple[str | int, str | int], ...]
"""(device, limit) pairs: a GPU index, "cpu" or "disk", and bytes or a size such as "20GiB"."""

_TASKS = ("causal-lm", "sequence-classifier")
DTYPE_NAMES = ("float32", "float16", "bfloat16")
_QUANTIZATIONS = ("8bit", "4bit")
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
_PLACEMENT_PATTERN = re.compile(r"cpu|disk|cuda(:\d+)?")
_GPU_PATTERN = re.compile(r"cuda:(\d+)")
_SIZE_PATTERN = re.compile(r"\d+(\.\d+)?[KMG]i?B", re.IGNORECASE)


@dataclass(frozen=True)
class ModelSpec:
    """Where a model lives and how to load it.

    `path` is a local folder or a hub id. `device` is auto | cpu | cuda | cuda:N (auto picks
    CUDA when available). `dtype` auto means float32 on CPU and the checkpoint's dtype on CUDA.
    Remote code runs only when `trust_remote_code` is set.

    A model larger than one device is split by `device_map` instead of `device`: "auto", or
    a mapping from module name ("" for the whole model) to cpu | disk | cuda:N (or a GPU
    index), kept as sorted (module, device) pairs. `max_memory` caps what "auto" puts on
    each device ({0: "20GiB", "cpu": "60GiB"}); `offload_folder` holds weights sent to disk.
    `quantization` loads 8bit or 4bit weights with bitsandbytes, on CUDA only.
    """

    path: str
    _: KW_ONLY
    task: Task = "causal-lm"
    device: str = "auto"
    dtype: DType = "auto"
    trust_remote_code: bool = False
    revision: str | None = None
    device_map: DeviceMap | Mapping[str, str | int] | None = None
    max_memory: MaxMemory | Mapping[str | int, str | int] | None = None
    offload_folder: str | None = None
    quantization: Quantization | None = None

    def __post_init__(self) -> None:
        if self.task not in _TASKS:
            raise ModelLoadError(f"model {self.path!r}: task {self.task!r} is not one of {list(_TASKS)}")
        if self.dtype != "auto" and self.dtype not in DTYPE_NAMES:
            raise ModelLoadError(f"model {self.path!r}: dtype {self.dtype!r} is not one of {['auto', *DTYPE_NAMES]}")
        if not _DEVICE_PATTERN.fullmatch(self.device):
            raise ModelLoadError(f"model {self.path!r}: device {self.device!r} is not one of auto, cpu, cuda or cuda:N")
        if self.quantization is not None and self.quantization not in _QUANTIZATIONS:
            raise ModelLoadError(
                f"model {self.path!r}: quantization {self.quantization!r} is not one of {list(_QUANTIZATIONS)}"
            )
        if self.quantization is not None and self.device == "cpu":
            raise ModelLoadError(
                f"model {self.path!r}: quantization {self.quantization!r} runs on CUDA (bitsandbytes), not on "
                "device 'cpu'; use device auto or cuda, or load without quantization"
            )
        if self.device_map is None:
            for name in ("max_memory", "offload_folder"):
                if getattr(self, name) is not None:
                    raise ModelLoadError(
                        f"model {self.path!r}: {name} applies only to a model split by device_map; "
                        "set device_map (e.g. 'auto') or drop it"
                    )
            return
        if self.device != "auto":
            raise ModelLoadError(
                f"model {self.path!r}: device {self.device!r} and device_map both place the model; give one of them "
                "(with a device_map, inputs go to the device of the input embeddings)"
            )
        object.__setattr__(self, "device_map", _device_map(self.path, self.device_map))
        if self.max_memory is not None:
            if self.device_map != "auto":
                raise ModelLoadError(
                    f"model {self.path!r}: max_memory caps what device_map 'auto' puts on each device; "
                    "a device_map mapping places every module itself, so drop max_memory or use 'auto'"
                )
            object.__setattr__(self, "max_memory", _max_memory(self.path, self.max_memory))


def _device_map(path: str, device_map: object) -> DeviceMap:
    """The map as stored: "auto", or sorted (module, device) pairs with GPU indices written cuda:N."""
    if device_map == "auto":
        return "auto"
    if isinstance(device_map, str):
        raise ModelLoadError(
            f"model {path!r}: device_map {device_map!r} is neither 'auto' nor a mapping from module name to device"
        )
    placed = []
    for module, device in _pairs(path, "device_map", device_map):
        if _is_index(device):
            device = f"cuda:{device}"
        if not isinstance(module, str) or not isinstance(device, str) or not _PLACEMENT_PATTERN.fullmatch(device):
            raise ModelLoadError(
                f"model {path!r}: device_map[{module!r}] is {device!r}; map module names to cpu, disk, cuda, "
                "cuda:N or a GPU index, or use 'auto'"
            )
        placed.append((module, device))
    return tuple(sorted(placed))


def _max_memory(path: str, max_memory: object) -> MaxMemory:
    """The limits as (device, limit) pairs, a GPU named by its index as accelerate wants it."""
    limits = []
    for device, limit in _pairs(path, "max_memory", max_memory):
        gpu = _GPU_PATTERN.fullmatch(device) if isinstance(device, str) else None
        key = int(gpu.group(1)) if gpu else device
        if not (_is_index(key) or key in ("cpu", "disk")):
            raise ModelLoadError(
                f"model {path!r}: max_memory device {device!r} is not a GPU index, cuda:N, cpu or disk"
            )
        if not (_is_index(limit) and limit > 0 or isinstance(limit, str) and _SIZE_PATTERN.fullmatch(limit)):
            raise ModelLoadError(
                f"model {path!r}: max_memory[{device!r}] is {limit!r}; give a number of bytes or a size such as '20GiB'"
            )
        limits.append((key, limit))
    return tuple(sorted(limits, key=lambda pair: str(pair[0])))


def _pairs(path: str, name: str, value: object) -> list[tuple[object, object]]:
    """The (key, value) pairs of a non-empty mapping, or of a sequence of pairs (a spec's stored form)."""
    pairs = list(value.items()) if isinstance(value, Mapping) else value
    if (
        not isinstance(pairs, (list, tuple))
        or not pairs
        or not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in pairs)
    ):
        raise ModelLoadError(f"model {path!r}: {name} {value!r} is not a non-empty mapping")
    return [tuple(pair) for pair in pairs]


def _is_index(value: object) -> bool:
    """Whether `value` is a GPU index (an int >= 0, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
