"""What exact and attribution patching share: checked inputs, unit chunks, the patch plan."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

from interventions._adapter import ModelAdapter
from interventions._alignment import AlignedPair, mass_targets
from interventions._backoff import cuda_budget
from interventions._evaluate import _bind_outcome, _tokenize
from interventions._outcomes import Outcome, _Reader
from interventions._sites import HEAD_KINDS, Architecture, Point, Site, architecture_of
from interventions.errors import InterventionError

# Memory that patching may fill on a CPU (no free-memory query there).
_CPU_BYTES = 2 << 30
# Query positions per stacked CPU batch: enough for efficient matrix products, few enough
# that a block's intermediate tensors stay in cache (benchmarks/patching.py ran 10-25%
# faster with 512 than with 1024 or 2048).
_CPU_TOKENS = 512
_MAX_ROWS = 512
# Token pairs gathered at once when comparing or multiplying activations pair by pair.
_PAIRS_PER_PIECE = 1 << 14

Configuration = tuple[Site, str]


@dataclass(frozen=True)
class Sweep:
    """A checked patching request: every (unit, site, position) to patch, tokenized."""

    adapter: ModelAdapter
    architecture: Architecture
    reader: _Reader
    pairs: tuple[AlignedPair, ...]
    configurations: tuple[Configuration, ...]
    _: KW_ONLY
    destination_ids: tuple[tuple[int, ...], ...]
    source_ids: tuple[tuple[int, ...], ...]
    batch_size: int | None

    @property
    def site_points(self) -> tuple[Point, ...]:
        """The distinct points the configurations' sites live at."""
        return tuple(dict.fromkeys(site.point for site, _ in self.configurations))

    def position_bytes(self, points: Sequence[Point]) -> int:
        """Bytes one token of one text takes at `points` (a pattern holds a row over the keys)."""
        hidden = self.adapter.model.config.hidden_size
        element = torch.finfo(self.adapter.dtype).bits // 8
        heads = self.architecture.n_heads
        return element * sum(heads * self.max_length if kind == "pattern" else hidden for kind, _ in points)

    @property
    def max_length(self) -> int:
        return max((len(ids) for ids in (*self.destination_ids, *self.source_ids)), default=1)

    def frame(self, column: str, values: np.ndarray) -> pd.DataFrame:
        """One row per (unit, site, position), unit-major, with `values` in `column`."""
        n_units, n_configs = len(self.pairs), len(self.configurations)
        sites = [site for site, _ in self.configurations]
        return pd.DataFrame(
            {
                "unit": np.repeat(np.arange(n_units, dtype=np.int64), n_configs),
                "site": [site.name for site in sites] * n_units,
                "component": [site.component for site in sites] * n_units,
                "layer": np.tile([site.layer for site in sites], n_units).astype(np.int64),
                "head": pd.array([site.head for site in sites] * n_units, dtype="Int64"),
                "position": [position for _, position in self.configurations] * n_units,
                column: values,
            }
        )

    def unit_chunks(self, bytes_per_unit: int) -> Iterator[np.ndarray]:
        """Consecutive groups of units whose captured activations fit in memory together."""
        size = max(1, int(memory_budget(self.adapter.device) // max(bytes_per_unit, 1)))
        for start in range(0, len(self.pairs), size):
            yield np.arange(start, min(start + size, len(self.pairs)))

    def texts(self, units: np.ndarray) -> tuple[list[tuple[int, ...]], np.ndarray, np.ndarray]:
        """Distinct token sequences of `units`' two runs and each unit's (dest, source) index."""
        index: dict[tuple[int, ...], int] = {}
        for unit in units:
            index.setdefault(self.destination_ids[unit], len(index))
            index.setdefault(self.source_ids[unit], len(index))
        destination = np.array([index[self.destination_ids[u]] for u in units], dtype=np.int64)
        source = np.array([index[self.source_ids[u]] for u in units], dtype=np.int64)
        return list(index), destination, source

    def key_targets(self, units: np.ndarray, width: int) -> np.ndarray:
        """(units, width): where each source key's attention mass lands among the destination's
        keys (`mass_targets` over the "all" positions and the appended suffix); -1 past a
        source text's end."""
        targets = np.full((len(units), width), -1, dtype=np.int64)
        for row, unit in enumerate(units):
            pair = self.pairs[unit]
            dest_length, source_length = len(self.destination_ids[unit]), len(self.source_ids[unit])
            suffix = len(self.reader.suffix)
            appended = tuple((dest_length - suffix + k, source_length - suffix + k) for k in range(suffix))
            targets[row, :source_length] = mass_targets(tuple(pair.positions["all"]) + appended, source_length)
        return targets

    def plan(self, units: np.ndarray, destination: np.ndarray, source: np.ndarray) -> Plan:
        """Every (unit, configuration) of `units` as a patch row with its flattened pairs."""
        positions = list(dict.fromkeys(position for _, position in self.configurations))
        column = {position: number for number, position in enumerate(positions)}
        config_position = np.array([column[p] for _, p in self.configurations], dtype=np.int64)
        pieces_d, pieces_s = [], []
        for unit in units:
            aligned = [np.asarray(self.pairs[unit].positions[p], dtype=np.int64) for p in positions]
            pieces_d += [aligned[number][:, 0] for number in config_position]
            pieces_s += [aligned[number][:, 1] for number in config_position]
        counts = np.array([len(piece) for piece in pieces_d], dtype=np.int64)
        offsets = (np.cumsum(counts) - counts).astype(np.int64)
        d, s = (np.concatenate([*pieces, np.zeros(0, np.int64)]) for pieces in (pieces_d, pieces_s))
        n_configs = len(self.configurations)
        points = self.site_points
        config_point = np.array([points.index(site.point) for site, _ in self.configurations], dtype=np.int64)
        config_head = np.array(
            [-1 if site.head is None else site.head for site, _ in self.configurations],
            dtype=np.int64,
        )
        return Plan(
            result=(units[:, None] * n_configs + np.arange(n_configs)).ravel(),
            member=np.repeat(np.arange(len(units), dtype=np.int64), n_configs),
            config=np.tile(np.arange(n_configs, dtype=np.int64), len(units)),
            destination=np.repeat(destination, n_configs),
            source=np.repeat(source, n_configs),
            point=np.tile(config_point, len(units)),
            head=np.tile(config_head, len(units)),
            offsets=offsets,
            counts=counts,
            d=d,
            s=s,
            start=np.minimum.reduceat(d, offsets) if len(d) else counts,
            points=points,
        )


@dataclass(frozen=True)
class Plan:
    """Patch rows of one chunk of units; pairs of row r are d, s[offsets[r]:+counts[r]].

    `result` is each row's index in the sweep's output, `member` its unit's index in the
    chunk, `config` its configuration's, `destination`/`source` its texts in the chunk's
    trace, `point` an index into `points`, `head` -1 for whole-point sites, `start` the
    earliest patched destination position.
    """

    result: np.ndarray
    member: np.ndarray
    config: np.ndarray
    destination: np.ndarray
    source: np.ndarray
    point: np.ndarray
    head: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    d: np.ndarray
    s: np.ndarray
    start: np.ndarray
    points: tuple[Point, ...]

    def keeping(self, kept: np.ndarray) -> Plan:
        """The plan with only the pairs where `kept` (one flag per pair) holds; a row may keep none."""
        counts = np.add.reduceat(kept.astype(np.int64), self.offsets) if len(kept) else self.counts
        offsets = (np.cumsum(counts) - counts).astype(np.int64)
        d, s = self.d[kept], self.s[kept]
        start = np.zeros_like(counts)
        some = counts > 0
        start[some] = np.minimum.reduceat(d, offsets[some]) if some.any() else start[some]
        return dataclasses.replace(self, counts=counts, offsets=offsets, d=d, s=s, start=start)

    def pieces(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        """`rows` in consecutive pieces of a bounded number of pairs (at least one row each)."""
        ends = np.cumsum(self.counts[rows])
        first = 0
        while first < len(rows):
            done = ends[first - 1] if first else 0
            stop = int(np.searchsorted(ends, done + _PAIRS_PER_PIECE, side="right"))
            yield rows[first : max(stop, first + 1)]
            first = max(stop, first + 1)

    def pairs_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the pairs of `rows`: (position of the pair's row within `rows`, pair index)."""
        counts = self.counts[rows]
        owner = np.repeat(np.arange(len(rows)), counts)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        return owner, np.arange(int(counts.sum())) - first + np.repeat(self.offsets[rows], counts)


@dataclass(frozen=True)
class PairValues:
    """A chunk's captured activations read pair by pair, for a plan's rows.

    `destination` and `source` map points to (texts, positions, ...) activations (the same
    mapping when both runs share one trace); `targets` are `Sweep.key_targets` of the
    chunk's units, needed to lay source attention rows over destination keys.
    """

    architecture: Architecture
    destination: Mapping[Point, torch.Tensor]
    source: Mapping[Point, torch.Tensor]
    targets: torch.Tensor | None = None

    def read(
        self,
        plan: Plan,
        rows: np.ndarray,
        owner: np.ndarray,
        pair: np.ndarray,
        point: Point,
        run: Literal["destination", "source"],
    ) -> torch.Tensor:
        """One value per pair (`Plan.pairs_of(rows)`): the run's activation at its token there.

        A head point gives the row's head slice (pairs, d_head); a pattern the row's head's
        attention row over destination keys (pairs, keys), a source row moved onto them.
        """
        activations = (self.destination if run == "destination" else self.source)[point]
        device = activations.device
        texts = (plan.destination if run == "destination" else plan.source)[rows][owner]
        at = (as_index(texts, device), as_index((plan.d if run == "destination" else plan.s)[pair], device))
        kind = point[0]
        if kind not in HEAD_KINDS:
            return activations[at]
        head = as_index(plan.head[rows][owner], device)
        if kind != "pattern":
            heads = self.architecture.point_heads(kind)
            return activations.view(*activations.shape[:2], heads, -1)[(*at, head)]
        row = activations[(*at, head)]
        if run == "destination":
            return row
        width = self.destination[point].shape[-1]
        targets = self.targets[as_index(plan.member[rows][owner], device)]
        targets = torch.where(targets < 0, width, targets)
        moved = row.new_zeros((len(pair), width + 1))
        return moved.scatter_add_(1, targets, row)[:, :width]


def configurations(sites: Sequence[Site], positions: Sequence[str]) -> list[Configuration]:
    """Every (site, position), site-major; InterventionError for a bare value or a repeat."""
    if isinstance(positions, str) or isinstance(sites, (str, Site)):
        raise InterventionError(
            f"sites and positions must be sequences, got {sites!r} and {positions!r}; wrap a single one in a list"
        )
    for name, values in (("sites", sites), ("positions", positions)):
        repeated = sorted(str(value) for value, count in Counter(values).items() if count > 1)
        if repeated:
            raise InterventionError(f"{name} must be distinct; repeated: {repeated}")
    return [(site, position) for site in sites for position in positions]


def prepare(
    adapter: ModelAdapter,
    outcome: Outcome,
    pairs: Sequence[AlignedPair],
    configurations: Sequence[Configuration],
    *,
    batch_size: int | None,
) -> Sweep:
    """Check a patching request against the model and tokenize both runs of every unit."""
    architecture = architecture_of(adapter.model)
    reader = _bind_outcome(adapter, outcome)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InterventionError(f"batch_size must be an int >= 1 or None, got {batch_size!r}")
    pairs = tuple(pairs)
    for number, pair in enumerate(pairs):
        if not isinstance(pair, AlignedPair):
            raise InterventionError(
                f"pairs[{number}] is a {type(pair).__name__}, not an AlignedPair; build pairs "
                "with align(destination, source, template, tokenizer, treatment=...)"
            )
    for site in dict.fromkeys(site for site, _ in configurations):
        if not isinstance(site, Site):
            raise InterventionError(
                f"sites must be Site objects, got {site!r}; use Site.parse({site!r}) or "
                "model_sites(adapter, components)"
            )
        architecture.check(site)
    for position in dict.fromkeys(position for _, position in configurations):
        for number, pair in enumerate(pairs):
            if not pair.positions.get(position):
                raise InterventionError(
                    f"position {position!r} is not aligned in pairs[{number}]; its positions "
                    f"are {sorted(name for name, found in pair.positions.items() if found)}"
                )
    if any(site.component == "head_pattern" for site, _ in configurations):
        for number, pair in enumerate(pairs):
            if not pair.positions.get("all"):
                raise InterventionError(
                    f"pairs[{number}] has no 'all' positions; a patched attention pattern lays the "
                    "source's keys over the destination's by them; build pairs with align(...)"
                )
    texts = [text for pair in pairs for text in (pair.destination.text, pair.source.text)]
    token_ids = [tuple(ids) for ids in _tokenize(adapter, texts)]
    for number, pair in enumerate(pairs):
        _check_alignment(number, pair, token_ids[2 * number], token_ids[2 * number + 1], architecture)
    suffix = tuple(reader.suffix)
    return Sweep(
        adapter,
        architecture,
        reader,
        pairs,
        tuple(configurations),
        destination_ids=tuple(ids + suffix for ids in token_ids[0::2]),
        source_ids=tuple(ids + suffix for ids in token_ids[1::2]),
        batch_size=batch_size,
    )


def as_index(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A numpy index array as a long tensor on `device`."""
    return torch.as_tensor(array, dtype=torch.long, device=device)


def memory_budget(device: torch.device) -> float:
    """Bytes patching may fill: a share of free CUDA memory, or a fixed CPU allowance."""
    if device.type == "cuda":
        return cuda_budget(device)
    return float(_CPU_BYTES)


def token_budget(sweep: Sweep, *, factor: float = 1.0) -> int:
    """Query positions one stacked forward may hold: sized to CUDA memory, fixed on CPU."""
    if sweep.adapter.device.type != "cuda":
        return int(_CPU_TOKENS * factor)
    architecture = sweep.architecture
    hidden = architecture.n_heads * architecture.d_head
    element = torch.finfo(sweep.adapter.dtype).bits // 8
    per_token = element * (24 * hidden + 2 * architecture.n_heads * sweep.max_length)
    return max(1, int(memory_budget(sweep.adapter.device) * factor // per_token))


def _check_alignment(
    number: int,
    pair: AlignedPair,
    destination: tuple[int, ...],
    source: tuple[int, ...],
    architecture: Architecture,
) -> None:
    """Raise when a pair's positions do not fit its texts as this model tokenizes them."""
    for name, pairs in pair.positions.items():
        for d, s in pairs:
            if not (0 <= d < len(destination) and 0 <= s < len(source)):
                raise InterventionError(
                    f"pairs[{number}] position {name!r} pairs token {d} with {s}, but the "
                    f"texts have {len(destination)} and {len(source)} tokens under this "
                    "model's tokenizer; align with the model's own tokenizer"
                )
    decision = ((0, 0),) if architecture.decision == "first" else ((len(destination) - 1, len(source) - 1),)
    if tuple(pair.positions.get("last", decision)) != decision:
        raise InterventionError(
            f"pairs[{number}] position 'last' is {tuple(pair.positions['last'])}, but this "
            f"{architecture.model_type} model reads its outcome at {decision} (the "
            f"{architecture.decision} token); align with decision="
            f"{architecture.decision!r}"
        )
