"""Named activation sites and the per-architecture table that maps them onto modules.

A site is a component at one layer (`resid_pre.3`, `resid_mid.3`, `attn_out.3`,
`mlp_out.3`, `resid_post.3`) or a part of one attention head: its input slice to the
output projection (`head.3.5`), its query, key or value vectors before any rotary
embedding (`head_q.3.5`, `head_k.3.1`, `head_v.3.1`) or its attention probabilities
(`head_pattern.3.5`, one row per query position). Queries and patterns are indexed by
query head; keys and values by key/value head, which under grouped-query attention
several query heads share (`Architecture.kv_head_of`). `resid_mid` is the stream between
a block's attention and its MLP: input + attention output in pre-norm blocks (a parallel
block's MLP reads its input instead, so there only the block's output reads it), the
attention norm's output in post-norm ones.

Which modules hold them is data: one `Layout` row per family of architectures in
`ARCHITECTURES`, one `Readout` row per kind of model head in `READOUTS`. A model is
matched by its config's `model_type`, then every module the row names is checked to
exist, so a renamed module fails loudly here and not as a wrong number later.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Literal, get_args

from interventions.errors import InterventionError

if TYPE_CHECKING:
    from torch import nn

    from interventions._adapter import ModelAdapter

Component = Literal[
    "resid_pre",
    "resid_mid",
    "resid_post",
    "attn_out",
    "mlp_out",
    "head",
    "head_q",
    "head_k",
    "head_v",
    "head_pattern",
]
COMPONENTS: tuple[str, ...] = get_args(Component)
HEAD_COMPONENTS: tuple[str, ...] = ("head", "head_q", "head_k", "head_v", "head_pattern")
"""Components whose sites name one head: a query head, or a key/value head for head_k and head_v."""
KV_COMPONENTS: tuple[str, ...] = ("head_k", "head_v")
# Where a site lives in a forward pass: ("stream", l) is the residual stream entering block l
# (l = n_layers: leaving the last block); ("mid", l) block l's stream between attention and
# MLP (`BlockRunner.mlp_input`'s middle); ("q", l), ("k", l), ("v", l) its query, key and
# value projections before any rotary embedding, head-major; ("pattern", l) its attention
# probabilities, presented as (batch, query, head, key); ("z", l) the input of its attention
# output projection; ("attn_out", l) that projection's output; ("mlp_out", l) the MLP's
# output; ("mlp_in", l) the MLP's input (no site: edge attribution reads its gradient).
Point = tuple[str, int]
HEAD_KINDS: tuple[str, ...] = ("z", "q", "k", "v", "pattern")
"""Point kinds a head site takes one head's slice of."""
AFTER_ATTENTION: tuple[str, ...] = ("z", "attn_out", "mid", "mlp_out")
"""Point kinds computed after a block's attention mixed its values (a patch there reuses it)."""
_POINT_KIND = {
    "resid_pre": "stream",
    "resid_mid": "mid",
    "attn_out": "attn_out",
    "mlp_out": "mlp_out",
    "head": "z",
    "head_q": "q",
    "head_k": "k",
    "head_v": "v",
    "head_pattern": "pattern",
}

_SITE_NAME = re.compile(r"([a-z_]+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Site:
    """One activation site: a component at a layer, and for head components the head index.

    >>> Site.parse("head.3.5")
    Site(component='head', layer=3, head=5)
    """

    component: Component
    layer: int
    head: int | None = None

    def __post_init__(self) -> None:
        if self.component not in COMPONENTS:
            raise InterventionError(
                f"unknown site component {self.component!r}"
                f"{_closest(self.component, COMPONENTS)}; components are {list(COMPONENTS)}"
            )
        if not isinstance(self.layer, int) or self.layer < 0:
            raise InterventionError(f"site layer must be an int >= 0, got {self.layer!r}")
        if (self.component in HEAD_COMPONENTS) != (self.head is not None):
            raise InterventionError(
                f"site {self.component}.{self.layer} with head={self.head!r}: a head index is "
                f"given exactly for the head components {list(HEAD_COMPONENTS)}, e.g. Site('head', 3, 5)"
            )
        if self.head is not None and (not isinstance(self.head, int) or self.head < 0):
            raise InterventionError(f"site head must be an int >= 0, got {self.head!r}")

    @property
    def name(self) -> str:
        """The dotted name, e.g. "resid_pre.3" or "head_q.3.5"."""
        suffix = "" if self.head is None else f".{self.head}"
        return f"{self.component}.{self.layer}{suffix}"

    @classmethod
    def parse(cls, name: str) -> Site:
        """The site named `name` ("resid_pre.3", "head.3.5"); InterventionError on a bad name."""
        match = _SITE_NAME.fullmatch(name) if isinstance(name, str) else None
        if match is None:
            raise InterventionError(
                f"site name {name!r} is not COMPONENT.LAYER or head.LAYER.HEAD, e.g. 'resid_pre.3', "
                "'head.3.5' or 'head_k.3.1'"
            )
        component, layer, head = match.groups()
        return cls(component, int(layer), None if head is None else int(head))

    @property
    def point(self) -> Point:
        """Where in the forward pass this site's activation lives (see `Point`)."""
        if self.component == "resid_post":
            return ("stream", self.layer + 1)
        return (_POINT_KIND[self.component], self.layer)


@dataclass(frozen=True)
class Layout:
    """Module paths of one architecture family; a row of `ARCHITECTURES`.

    Paths are dotted attribute paths: `blocks`, `rotary` and `final_norm` inside the base
    model (`model.base_model`), the rest inside one block. `qkv` is one fused projection
    ("split": q|k|v along features; "per_head": GPT-NeoX's per-head [q k v] interleave) or
    three ("separate"). `residual` says how a block adds its parts: "sequential" pre-norm
    (x + attn, then + mlp), "parallel" (x + attn + mlp of the same x, when the config's
    `use_parallel_residual` is on) or "post_norm" (BERT: norm after each residual add).
    """

    family: str
    model_types: tuple[str, ...]
    _: KW_ONLY
    causal: bool
    blocks: str
    attention: str
    qkv: tuple[str, ...]
    qkv_layout: Literal["split", "per_head", "separate"]
    o_proj: str
    mlp: tuple[str, ...]
    attention_norm: str
    mlp_norm: str
    residual: Literal["sequential", "parallel", "post_norm"]
    rotary: str | None = None
    final_norm: str | None = None


@dataclass(frozen=True)
class Readout:
    """How final hidden states become logits; a row of `READOUTS`.

    `head` are paths in the full model, `base` paths in its base model; a model uses the
    first row whose modules all exist. `decision` is the position read: the last real token
    (causal LMs, decoder classifiers) or the first ([CLS] of encoder classifiers).
    """

    name: str
    task: Literal["causal-lm", "sequence-classifier"]
    head: tuple[str, ...]
    decision: Literal["last", "first"]
    base: tuple[str, ...] = ()


_ENCODER_BLOCK = {"causal": False, "residual": "post_norm", "qkv_layout": "separate"}

ARCHITECTURES: tuple[Layout, ...] = (
    Layout(
        "gpt2",
        ("gpt2",),
        causal=True,
        blocks="h",
        attention="attn",
        qkv=("attn.c_attn",),
        qkv_layout="split",
        o_proj="attn.c_proj",
        mlp=("mlp",),
        attention_norm="ln_1",
        mlp_norm="ln_2",
        residual="sequential",
        final_norm="ln_f",
    ),
    Layout(
        "llama",
        ("llama", "mistral", "qwen2"),
        causal=True,
        blocks="layers",
        attention="self_attn",
        qkv=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
        qkv_layout="separate",
        o_proj="self_attn.o_proj",
        mlp=("mlp",),
        attention_norm="input_layernorm",
        mlp_norm="post_attention_layernorm",
        residual="sequential",
        rotary="rotary_emb",
        final_norm="norm",
    ),
    Layout(
        "gpt_neox",
        ("gpt_neox",),
        causal=True,
        blocks="layers",
        attention="attention",
        qkv=("attention.query_key_value",),
        qkv_layout="per_head",
        o_proj="attention.dense",
        mlp=("mlp",),
        attention_norm="input_layernorm",
        mlp_norm="post_attention_layernorm",
        residual="parallel",
        rotary="rotary_emb",
        final_norm="final_layer_norm",
    ),
    Layout(
        "bert",
        ("bert", "roberta", "xlm-roberta", "camembert", "electra"),
        blocks="encoder.layer",
        attention="attention.self",
        qkv=("attention.self.query", "attention.self.key", "attention.self.value"),
        o_proj="attention.output.dense",
        mlp=("intermediate", "output.dense"),
        attention_norm="attention.output.LayerNorm",
        mlp_norm="output.LayerNorm",
        **_ENCODER_BLOCK,
    ),
    Layout(
        "distilbert",
        ("distilbert",),
        blocks="transformer.layer",
        attention="attention",
        qkv=("attention.q_lin", "attention.k_lin", "attention.v_lin"),
        o_proj="attention.out_lin",
        mlp=("ffn",),
        attention_norm="sa_layer_norm",
        mlp_norm="output_layer_norm",
        **_ENCODER_BLOCK,
    ),
)

READOUTS: tuple[Readout, ...] = (
    Readout("lm_head", "causal-lm", head=("lm_head",), decision="last"),
    Readout("score", "sequence-classifier", head=("score",), decision="last"),
    Readout("classification_head", "sequence-classifier", head=("classifier.out_proj",), decision="first"),
    Readout("pre_classifier", "sequence-classifier", head=("pre_classifier", "classifier"), decision="first"),
    Readout("pooler", "sequence-classifier", head=("classifier",), base=("pooler",), decision="first"),
)

_HOW_TO_ADD = (
    "to add one, append a Layout to ARCHITECTURES in interventions/_sites.py (its model_types, "
    "the paths of its blocks, attention projections, output projection, MLP and norms, and how "
    "the block adds residuals) and, if its head is new, a Readout to READOUTS"
)


@dataclass(frozen=True)
class Architecture:
    """A loaded model's layout, readout and sizes, as `architecture_of` found them."""

    model_type: str
    layout: Layout
    readout: Readout
    residual: Literal["sequential", "parallel", "post_norm"]
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int

    @property
    def causal(self) -> bool:
        return self.layout.causal

    @property
    def decision(self) -> Literal["last", "first"]:
        """The position an outcome is read at: "last" real token or "first" ([CLS])."""
        return self.readout.decision

    def check(self, site: Site) -> None:
        """Raise unless `site` exists in this model (layer and head in range)."""
        if site.layer >= self.n_layers:
            raise InterventionError(
                f"site {site.name!r}: layer {site.layer} is out of range; this "
                f"{self.model_type} model has layers 0 to {self.n_layers - 1}"
            )
        if site.head is not None and site.head >= self.point_heads(site.point[0]):
            if site.component in KV_COMPONENTS:
                raise InterventionError(
                    f"site {site.name!r}: key/value head {site.head} is out of range; this "
                    f"{self.model_type} model has key/value heads 0 to {self.n_kv_heads - 1}, each "
                    f"shared by {self.n_heads // self.n_kv_heads} query heads (see kv_head_of)"
                )
            raise InterventionError(
                f"site {site.name!r}: head {site.head} is out of range; this "
                f"{self.model_type} model has heads 0 to {self.n_heads - 1}"
            )

    def point_heads(self, kind: str) -> int:
        """How many heads a point's activation is sliced into: key/value heads for "k" and "v"."""
        return self.n_kv_heads if kind in ("k", "v") else self.n_heads

    def kv_head_of(self, head: int) -> int:
        """The key/value head that query head `head` reads (grouped-query attention)."""
        return head // (self.n_heads // self.n_kv_heads)


def architecture_of(model: nn.Module) -> Architecture:
    """The site layout of a loaded HuggingFace model, from its config and module structure.

    The config's `model_type` picks a `Layout` row; the model's modules then pick the
    `Readout` and are checked to hold every path the row names. Raises InterventionError
    for an unknown model type (listing the supported ones and how to add a mapping) or a
    model whose modules do not match its row.
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    layout = next((row for row in ARCHITECTURES if model_type in row.model_types), None)
    if layout is None:
        supported = sorted(name for row in ARCHITECTURES for name in row.model_types)
        raise InterventionError(
            f"no site mapping for model_type {model_type!r} ({type(model).__name__}); "
            f"supported model types: {', '.join(supported)}; {_HOW_TO_ADD}"
        )
    if getattr(config, "is_decoder", False) and not layout.causal:
        raise InterventionError(
            f"{type(model).__name__} is a {model_type} model configured with is_decoder=True; "
            "only bidirectional encoders of this family are mapped"
        )
    base = model.base_model
    fitting = [row for row in READOUTS if (row.decision == "last") == layout.causal]
    readout = next(
        (
            row
            for row in fitting
            if all(_find(model, path) is not None for path in row.head)
            and all(_find(base, path) is not None for path in row.base)
        ),
        None,
    )
    if readout is None:
        raise InterventionError(
            f"{type(model).__name__} ({model_type}) has no output head patching can read; "
            f"known heads of this family are the modules "
            f"{[row.head for row in fitting]}; {_HOW_TO_ADD}"
        )
    blocks = _require(model, base, layout.blocks, layout)
    n_layers = len(blocks)
    for path in (
        layout.attention,
        *layout.qkv,
        layout.o_proj,
        *layout.mlp,
        layout.attention_norm,
        layout.mlp_norm,
    ):
        _require(model, blocks[0], path, layout, prefix=f"{layout.blocks}.0.")
    for path in (layout.rotary, layout.final_norm):
        if path is not None:
            _require(model, base, path, layout)
    n_heads = config.num_attention_heads
    z_width = _in_features(_find(blocks[0], layout.o_proj))
    n_kv_heads = getattr(config, "num_key_value_heads", None) or n_heads
    residual = layout.residual
    if residual == "parallel" and not getattr(config, "use_parallel_residual", True):
        residual = "sequential"
    return Architecture(
        model_type=model_type,
        layout=layout,
        readout=readout,
        residual=residual,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        d_head=z_width // n_heads,
    )


def model_sites(
    adapter: ModelAdapter, components: Sequence[str], *, layers: Sequence[int] | None = None
) -> tuple[Site, ...]:
    """Every site of `components` in the adapter's model, layer-major, heads expanded.

    `layers` narrows the sweep (default: all layers); head_k and head_v expand over the
    key/value heads. Raises InterventionError for an unknown component or a layer out of range.

    >>> model_sites(adapter, ["resid_pre", "head"], layers=[0])  # doctest: +SKIP
    (Site('resid_pre', 0), Site('head', 0, 0), Site('head', 0, 1), ...)
    """
    if isinstance(components, str):
        raise InterventionError(
            f"components must be a sequence of names, got the string {components!r}; wrap it in a list"
        )
    for component in components:
        if component not in COMPONENTS:
            raise InterventionError(
                f"unknown site component {component!r}{_closest(component, COMPONENTS)}; "
                f"components are {list(COMPONENTS)}"
            )
    architecture = architecture_of(adapter.model)
    chosen = range(architecture.n_layers) if layers is None else layers
    for layer in chosen:
        if not isinstance(layer, int) or not 0 <= layer < architecture.n_layers:
            raise InterventionError(
                f"layer {layer!r} is out of range; this {architecture.model_type} model has "
                f"layers 0 to {architecture.n_layers - 1}"
            )
    return tuple(
        site
        for layer in chosen
        for component in components
        for site in (
            [Site(component, layer, head) for head in range(architecture.point_heads(_POINT_KIND[component]))]
            if component in HEAD_COMPONENTS
            else [Site(component, layer)]
        )
    )


def module_at(root: nn.Module, path: str) -> nn.Module:
    """The submodule of `root` at a dotted path (list indices allowed, e.g. "h.0.attn")."""
    found = _find(root, path)
    if found is None:
        raise InterventionError(f"{type(root).__name__} has no module {path!r}")
    return found


def _find(root: object, path: str) -> nn.Module | None:
    """The object at a dotted path under `root`, or None when any step is missing."""
    current = root
    for step in path.split("."):
        if step.isdigit() and hasattr(current, "__getitem__"):
            index = int(step)
            current = current[index] if index < len(current) else None
        else:
            current = getattr(current, step, None)
        if current is None:
            return None
    return current


def _require(model: nn.Module, root: nn.Module, path: str, layout: Layout, *, prefix: str = "") -> nn.Module:
    """The module at `path` under `root`; InterventionError naming the row when it is missing."""
    found = _find(root, path)
    if found is None:
        raise InterventionError(
            f"{type(model).__name__} ({model.config.model_type}) is mapped to the "
            f"{layout.family!r} layout, but its base model has no module "
            f"{prefix + path!r}; fix that Layout row in interventions/_sites.py or add a "
            "new one for this module structure"
        )
    return found


def _in_features(module: nn.Module) -> int:
    """Input width of a Linear or of GPT-2's transposed Conv1D."""
    if hasattr(module, "in_features"):
        return module.in_features
    return module.weight.shape[0]


def _closest(name: str, names: Sequence[str]) -> str:
    """A "did you mean" suffix for the closest valid name, or nothing."""
    close = difflib.get_close_matches(str(name), names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
