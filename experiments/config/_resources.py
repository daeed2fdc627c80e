"""Memory a config asks for, estimated before anything runs and checked against the machine's memory.

Stage: config. May import experiments.errors and the config stage.

A size typed with a few zeros too many (`--units 2000000000`) is refused with the field
that asks for it, instead of ending in an out-of-memory kill. The estimates count only the
largest tables a run holds at once, so they err low: a config they refuse cannot run here.
"""

from __future__ import annotations

import os

from experiments.config._schema import ExperimentConfig
from experiments.errors import ConfigError

BYTES_PER_TEXT = 1024
"""One (unit, arm) row: its rendered text, token ids and outcome rows."""
BYTES_PER_DRAW = 8
"""One float64 per resample of each resampled value."""


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_resources(config: ExperimentConfig, *, n_arms: int, memory: int | None) -> None:
    """Raise ConfigError naming the field, its value, the estimate and `memory` when a size cannot fit.

    Units: every unit is rendered and read in every arm (templated runs; a data run's units
    are its documents). Bootstrap: effects resample in bounded chunks, keeping one float64
    per resample; evidence linking resamples evidence units x (2 x factors + 1) values at once.
    """
    if memory is None:
        return
    units = None
    if config.data is None:
        field, units, phrase = _unit_field(config)
        need = units * n_arms * BYTES_PER_TEXT
        if need > memory:
            raise ConfigError(
                f"{phrase} in {n_arms} arms need about {size_words(need)} of memory "
                f"({BYTES_PER_TEXT // 1024} KiB per unit and arm), more than this machine's {size_words(memory)}; "
                f"lower {field}",
                path=field,
            )
    resampled = 1
    detail = f"{BYTES_PER_DRAW} bytes per resample"
    if config.evidence is not None:
        evidence_units = config.evidence.units if units is None else min(config.evidence.units, units)
        columns = 2 * len(config.factors) + 1
        resampled = evidence_units * columns
        detail += f" of {evidence_units:,} evidence units x {columns} values"
    need = config.inference.bootstrap * resampled * BYTES_PER_DRAW
    if need > memory:
        raise ConfigError(
            f"{config.inference.bootstrap:,} resamples need about {size_words(need)} of memory ({detail}), "
            f"more than this machine's {size_words(memory)}; lower inference.bootstrap (2000 is plenty for 95% intervals)",
            path="inference.bootstrap",
        )


def _unit_field(config: ExperimentConfig) -> tuple[str, int, str]:
    """(YAML path, value, words) of the setting that bounds a templated run's units."""
    sampling = config.sampling
    if sampling.mode == "exact":
        return (
            "sampling.max_exact_units",
            sampling.max_exact_units,
            f"up to {sampling.max_exact_units:,} enumerated units",
        )
    if sampling.target_half_width is not None:
        return "sampling.max_units", sampling.max_units, f"up to {sampling.max_units:,} units"
    return "sampling.units", sampling.units, f"{sampling.units:,} units"


def size_words(n_bytes: float) -> str:
    """Bytes in binary units: 1536 -> '1.5 KiB'."""
    if n_bytes < 1024:
        return f"{n_bytes:,.0f} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n_bytes /= 1024
        if n_bytes < 1024:
            return f"{n_bytes:,.1f} {unit}"
    return f"{n_bytes / 1024:,.1f} PiB"
