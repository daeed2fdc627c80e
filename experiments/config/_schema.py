"""The experiment config schema: YAML data -> typed, validated, frozen config.

Stage: config. May import experiments.errors and the config stage.

Field-level rules live here (pydantic); rules that span sections (graph versus
factors, effects versus graph) live in `_compile.py`. Every error names the
YAML path and the bad value, quoted at a bounded length.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from experiments.config._quote import quoted
from experiments.errors import ConfigError
from interventions import Component

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DATA_FORMATS = (".parquet", ".csv", ".jsonl")
MAX_PROBLEMS = 20
"""Problems one ConfigError lists; the rest are counted."""
_PATH_PART_LIMIT = 80


def _distinct_pair(value: list[str]) -> list[str]:
    """A contrast: two different values, [treated, reference]."""
    if len(value) != 2 or value[0] == value[1]:
        raise ValueError(f"contrast must name two different values [treated, reference], got {quoted(value)}")
    return value


def _data_format(path: str) -> str:
    """A data file path in one of the formats the loader reads."""
    if not path.lower().endswith(DATA_FORMATS):
        raise ValueError(f"data file {quoted(path)} must end in one of {', '.join(DATA_FORMATS)}")
    return path


class _Section(BaseModel):
    """A config section: frozen, and an unknown key is an error that suggests the closest valid one."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = list(cls.model_fields)
            for key in data:
                if key not in known:
                    close = difflib.get_close_matches(str(key), known, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(known)}"
                    raise ValueError(f"unknown key {quoted(key)}{hint}")
        return data


class ModelConfig(_Section):
    """Which model to audit and where to run it.

    `batch_size` is texts per forward pass, or `auto` to fit free GPU memory (32 on CPU);
    a batch that runs out of memory is halved and retried either way. A model larger than
    one device is split by `device_map` (`auto`, or module -> cpu | disk | cuda:N), capped
    per device by `max_memory`, with disk weights in `offload_folder` (relative to the
    config file); `quantization` loads 8-bit or 4-bit weights (bitsandbytes, CUDA only).
    """

    id: str = Field(min_length=1)
    task: Literal["causal-lm", "sequence-classifier"] = "causal-lm"
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    trust_remote_code: bool = False
    revision: str | None = None
    batch_size: int | Literal["auto"] = "auto"
    device_map: Literal["auto"] | dict[str, str | int] | None = None
    max_memory: dict[str, str | int] | None = None
    offload_folder: str | None = None
    quantization: Literal["8bit", "4bit"] | None = None

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size_form(cls, value: Any) -> Any:
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"batch_size must be a positive integer or auto, got {quoted(value)}")
        return value

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"device {quoted(value)} is not one of auto, cpu, cuda, cuda:N")
        return value


def _name_as_written(name: Any, where: str) -> Any:
    """A name YAML read as a number, as its text; ValueError for one YAML read as a boolean."""
    if isinstance(name, bool):
        raise ValueError(
            f"{where} has the name {str(name).lower()} where YAML read a bare yes, no, on, off, true or false as a "
            f'boolean; quote such names, e.g. {{"yes": [" yes"], "no": [" no"]}} and target: "yes"'
        )
    if isinstance(name, (int, float)):
        return str(name)
    return name


class OutcomeConfig(_Section):
    """How the model's output becomes the measured outcome.

    `generation` decodes `max_new_tokens` tokens (greedy, or `samples` draws at `temperature`,
    seeded by sampling.seed) and maps each answer to an option by the `parse` regular
    expressions: the value is the share of answers parsed to `target` (or their mean
    `values`); an answer no pattern matches is counted and left out, or counts `unparsed`.
    `choice_prob` and `expected_value` read `options` (name -> the strings that give it,
    of any token length); `expected_value` weighs each option (or, without options, each
    classifier label) by its `values` number. A classifier's class is named by `label` (always text, as in the model's id2label)
    or by its position, `label_index`; a bare number as `label` could mean either, so it
    is refused with both readings spelled out. `name` labels the outcome in every table
    (required in an `outcomes` list; a lone `outcome` is named after graph.outcome).
    `negligible` is this outcome's band, in its own units (default: inference.negligible),
    for outcomes on different scales (log-odds, probabilities, shares).
    """

    name: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    type: Literal[
        "logit_diff",
        "answer_prob",
        "choice_prob",
        "expected_value",
        "generation",
        "class_prob",
        "class_logit",
        "continuation_logprob",
    ]
    answers: dict[str, str] | None = None
    options: dict[str, list[str]] | None = None
    values: dict[str, float] | None = None
    target: str | None = None
    max_new_tokens: int | None = Field(default=None, ge=1)
    parse: dict[str, str] | None = None
    samples: int = Field(default=1, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    unparsed: float | None = None
    negligible: float | None = Field(default=None, ge=0)
    label: str | None = None
    label_index: int | None = Field(default=None, ge=0)
    continuation: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _names_as_written(cls, data: Any) -> Any:
        """Option names and `target` as the text the user meant: a YAML number (`1:`) is the name "1"; a YAML
        boolean (`yes:`, `no:`, `on:`, `off:`) lost its spelling, so it is refused with the fix."""
        if not isinstance(data, dict):
            return data
        named = dict(data)
        for key in ("answers", "options", "values", "parse"):
            if isinstance(named.get(key), dict):
                named[key] = {_name_as_written(name, key): value for name, value in named[key].items()}
        if "target" in named:
            named["target"] = _name_as_written(named["target"], "target")
        return named

    @field_validator("label", mode="before")
    @classmethod
    def _label_is_a_name(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(
                f"label {value} is a number, which could mean the label named {value} or class index {value}: "
                f"write label: '{value}' for the name, or label_index: {value} for the index"
            )
        return value

    @model_serializer(mode="wrap")
    def _without_default_name(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave out an unset name, so a one-outcome config dumps (and hashes) as it did before names existed."""
        dumped = handler(self)
        if dumped.get("name") is None:
            dumped.pop("name", None)
        return dumped

    @model_validator(mode="after")
    def _fields_for_type(self) -> OutcomeConfig:
        if self.type == "logit_diff":
            if self.answers is None or set(self.answers) != {"positive", "negative"}:
                raise ValueError("logit_diff needs answers: {positive: ..., negative: ...}")
        elif self.type == "answer_prob":
            if self.answers is None or len(self.answers) < 2:
                raise ValueError("answer_prob needs at least two answers, e.g. {positive: ' yes', negative: ' no'}")
            if self.target is not None and self.target not in self.answers:
                raise ValueError(
                    f"target {quoted(self.target)} is not one of the answers {quoted(sorted(self.answers))}"
                )
        elif self.type == "choice_prob":
            if self.options is None or len(self.options) < 2:
                raise ValueError(
                    "choice_prob needs at least two options, each a list of strings, e.g. "
                    "{yes: [' yes', ' Yes'], no: [' no', ' No']}"
                )
            if self.target not in self.options:
                raise ValueError(
                    f"choice_prob needs target: one of the options {quoted(sorted(self.options))}; got {quoted(self.target)}"
                )
        elif self.type == "generation":
            if self.max_new_tokens is None or not self.parse:
                raise ValueError(
                    "generation needs max_new_tokens and parse: option name -> regular expression, e.g. "
                    "{yes: '(?i)\\byes\\b', no: '(?i)\\bno\\b'}"
                )
            if (self.target is None) == (self.values is None):
                raise ValueError("generation needs exactly one of target (an option of parse) or values (per option)")
        elif self.type == "expected_value":
            if not self.values:
                raise ValueError(
                    "expected_value needs values: a number per option (with options, a causal LM) or per classifier "
                    "label (without options)"
                )
            if self.options is not None and set(self.options) != set(self.values):
                raise ValueError(
                    f"expected_value's values must name exactly the options {quoted(sorted(self.options))}; "
                    f"got {quoted(sorted(self.values))}"
                )
        elif self.type in ("class_prob", "class_logit"):
            if (self.label is None) == (self.label_index is None):
                raise ValueError(
                    f"{self.type} needs exactly one of label (the class's name) or label_index (its position)"
                )
        elif self.continuation is None or not self.continuation:
            raise ValueError("continuation_logprob needs continuation: the text whose log-likelihood is read")
        return self


class ChatMessage(_Section):
    """One message of a chat prompt; `content` holds `{factor}` slots like a template."""

    role: str = Field(min_length=1)
    content: str


class PromptConfig(_Section):
    """The prompt: a template, several variants drawn per unit, or chat messages.

    `chat` (one list of messages) or `chats` (variants, e.g. differing system messages) are
    rendered by the model tokenizer's own chat template, with a generation prompt, then
    `assistant_prefix` (the text the assistant's turn starts with, e.g. "Answer:").
    """

    template: str | None = None
    templates: list[str] | None = None
    chat: list[ChatMessage] | None = None
    chats: list[list[ChatMessage]] | None = None
    assistant_prefix: str = ""

    @model_validator(mode="after")
    def _one_of(self) -> PromptConfig:
        given = [key for key in ("template", "templates", "chat", "chats") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of template (one string), templates (a list of variants), chat (a list of "
                "messages) or chats (a list of message lists)" + (f"; got {', '.join(given)}" if given else "")
            )
        for key in ("templates", "chat", "chats"):
            if getattr(self, key) == []:
                raise ValueError(f"{key} is empty; give at least one")
        if self.assistant_prefix and self.chat is None and self.chats is None:
            raise ValueError("assistant_prefix belongs to a chat prompt; end the template with the text instead")
        return self

    @property
    def variants(self) -> tuple[str, ...]:
        """The plain template variants (none for a chat prompt, which the tokenizer renders)."""
        return (self.template,) if self.template is not None else tuple(self.templates or ())

    @property
    def conversations(self) -> tuple[list[ChatMessage], ...]:
        """The chat variants (none for a plain template)."""
        return (self.chat,) if self.chat is not None else tuple(self.chats or ())


class FactorConfig(_Section):
    """One input factor: its values with their surface forms, parents and distribution.

    In data mode the documents carry the values, so `values` may be a plain list of
    value names (surface forms and distributions belong to templated runs).
    """

    values: dict[str, list[str]] = Field(min_length=1)
    parents: list[str] | None = None
    distribution: dict[str, Any] | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _value_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            for item in value:
                if not isinstance(item, str):
                    raise ValueError(f"a list of values holds value names (text); got {quoted(item)}")
            repeated = sorted(name for name, count in Counter(value).items() if count > 1)
            if repeated:
                raise ValueError(f"values {quoted(repeated)} are listed more than once")
            return {item: [] for item in value}
        return value


class GraphConfig(_Section):
    """The causal graph: edges `a -> b` over factors and the outcome node."""

    outcome: str = "decision"
    edges: list[str] = Field(default_factory=list)


Source = Literal["rewrite", "observational", "human_pairs"]


class EffectConfig(_Section):
    """One effect to estimate: do(treatment=a) versus do(treatment=b).

    With data: `sources` names where the estimates come from (default: every source the
    data supports: rewrite where the treatment has rules, observational for a total
    effect, human_pairs where a pairs file is given), in the order the summary shows
    them; `directions` adds the effect on the documents at each factual value (for the
    observational estimators: on the treated and on the reference documents).
    """

    treatment: str
    contrast: list[str] | None = None
    moderators: list[str] = Field(default_factory=list)
    estimand: Literal["total", "direct"] = "total"
    hold: list[str] | None = None
    sources: list[Source] | None = Field(default=None, min_length=1)
    directions: bool = False

    @field_validator("sources")
    @classmethod
    def _distinct_sources(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"sources must be distinct; got {value}")
        return value

    @field_validator("contrast")
    @classmethod
    def _two_values(cls, value: list[str] | None) -> list[str] | None:
        return value if value is None else _distinct_pair(value)


class PathsConfig(_Section):
    """Path patching: each sender's counterfactual change reaching only one receiver at a time.

    `senders` are site names, `*` matching any index (`head.0.*`, `attn_out.*`, `mlp_out.1`,
    `resid_pre.0`); `receivers` read the residual stream: a head's query, key or value
    input (`head_q.1.*`, `head_k.1.*`, `head_v.1.0`; key and value heads by their own
    index), an MLP's input (`mlp_in.1`), or the stream the outcome is read from
    (`resid_post.last`).
    """

    senders: list[str] = Field(min_length=1)
    receivers: list[str] = Field(min_length=1)


class MediationConfig(_Section):
    """An activation-patching sweep: the indirect effect of a contrast through each model site, or along each edge.

    With `paths`, the sweep patches edges (sender -> receiver) instead of sites, and
    `components` and `layers` are not used; `method: attribution` then screens every edge
    by edge attribution patching and verifies the `verify_top` strongest exactly.
    `outcome` names the outcome patched (default: the first).
    """

    treatment: str
    contrast: list[str]
    outcome: str | None = None
    components: list[Component] = Field(default_factory=lambda: ["resid_pre", "attn_out", "mlp_out"], min_length=1)
    paths: PathsConfig | None = None
    layers: list[int] | None = None
    positions: list[str] = Field(default_factory=lambda: ["factor", "last"], min_length=1)
    direction: Literal["noise", "denoise"] = "noise"
    method: Literal["exact", "attribution"] = "exact"
    verify_top: int = Field(20, ge=1)
    units: int = Field(32, ge=2)

    @field_validator("contrast")
    @classmethod
    def _two_values(cls, value: list[str]) -> list[str]:
        return _distinct_pair(value)

    @model_validator(mode="after")
    def _sites_or_paths(self) -> MediationConfig:
        default = MediationConfig.model_fields["components"].default_factory()
        if self.paths is not None and (self.layers is not None or self.components != default):
            raise ValueError("with paths, the senders name the sites; remove components and layers")
        return self

    @field_validator("positions")
    @classmethod
    def _position_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in ("factor", "last", "all") and not re.match(r"^factor:[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"position {quoted(name)} is not one of factor, last, all, factor:NAME")
        return value


EvidenceMethod = Literal["attention", "attention_rollout", "gradient_x_input", "integrated_gradients", "probe"]


class EvidenceConfig(_Section):
    """Attention, saliency and probe evidence, linked to the interventional effects.

    Computed on the first `units` units (a weighted draw in exact mode); `baseline` is
    integrated gradients' baseline: the pad embedding, or each unit's counterfactual text.
    Saliency and the linked effects read `outcome` (default: the first).
    """

    methods: list[EvidenceMethod] = Field(
        default_factory=lambda: ["attention", "attention_rollout", "gradient_x_input", "integrated_gradients", "probe"],
        min_length=1,
    )
    units: int = Field(200, ge=4)
    baseline: Literal["pad", "counterfactual"] = "pad"
    steps: int = Field(32, ge=2)
    token_view_units: int = Field(4, ge=0)
    outcome: str | None = None


class DataConfig(_Section):
    """Real documents with annotated factors (data mode): the file and which column holds what.

    `path` is relative to the config file; `factors` maps factor names to annotation
    columns; `suffix` is appended to every document (and counterfactual) before the
    model reads it, e.g. the question the decision answers. `on_bad_rows: drop` keeps
    the good rows and reports the rest; `error` stops at the first bad row's reason.
    `where` keeps only rows whose column holds the value (or one of the values), e.g. a
    split; `limit` then keeps a random draw of that many good documents (seeded by `seed`,
    in file order), for a quick run on a large corpus.
    """

    path: str = Field(min_length=1)
    text: str = Field(min_length=1)
    id: str | None = None
    factors: dict[str, str] = Field(min_length=1)
    label: str | None = None
    suffix: str = ""
    on_bad_rows: Literal["drop", "error"] = "drop"
    where: dict[str, str | list[str]] = Field(default_factory=dict)
    limit: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0)

    @field_validator("where")
    @classmethod
    def _where_values(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for column, wanted in value.items():
            if isinstance(wanted, list) and not wanted:
                raise ValueError(f"where.{column} is an empty list; give a value or a list of values")
        return value

    @field_validator("path")
    @classmethod
    def _readable_format(cls, value: str) -> str:
        return _data_format(value)


class PairsConfig(_Section):
    """Counterfactual edits written by people: one row per edit of a document (data mode).

    Columns: id, original_id, factor, from, to, text; `path` is relative to the config file.
    """

    path: str = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _readable_format(cls, value: str) -> str:
        return _data_format(value)


class SamplingConfig(_Section):
    """How units are drawn: sampled, or every unit of a small space enumerated.

    With `target_half_width` set, units are drawn `batch_units` at a time (extending the
    same seeded draw) until every effect's anytime-valid interval has at most that half
    width, or `max_units` are drawn; `units` is then the size the interval is tuned for.
    """

    mode: Literal["sample", "exact"] = "sample"
    units: int = Field(500, ge=2)
    seed: int = Field(0, ge=0)
    max_exact_units: int = Field(100_000, ge=1)
    target_half_width: float | None = Field(None, gt=0)
    max_units: int = Field(10_000, ge=2)
    batch_units: int = Field(100, ge=2)

    @model_validator(mode="after")
    def _sequential_samples(self) -> SamplingConfig:
        if self.target_half_width is not None and self.mode == "exact":
            raise ValueError(
                "target_half_width draws units until the intervals are narrow enough, but mode is exact "
                "(every unit, no sampling error); remove target_half_width or use mode: sample"
            )
        return self


class ExecutorConfig(_Section):
    """Where the model's work runs (outcomes, patching sweeps, attention and saliency): in this process, or on
    Ray actors (one model replica each).

    `address` None starts or joins a local Ray instance; `auto` or `ray://host:port` joins a
    cluster. `num_workers` None means one per GPU (or per CPU without GPUs);
    `num_gpus_per_worker` None means 1 when the cluster has GPUs, else 0. `shard_units`
    units (in every arm, or of a sweep's or evidence's draw) make one shard: the grain of work
    handed out and of what a resume skips.
    """

    type: Literal["local", "ray"] = "local"
    address: str | None = None
    num_workers: int | None = Field(None, ge=1)
    num_gpus_per_worker: float | None = Field(None, ge=0)
    shard_units: int = Field(64, ge=1)


class InferenceConfig(_Section):
    """Interval level, bootstrap size, multiple-testing correction, and the band of negligible effects.

    `negligible` is in outcome units: an effect whose whole interval lies within
    +-negligible is read as negligible rather than as an increase or decrease.
    `bootstrap_method` is the bootstrap interval of the "bootstrap" rows: the default
    (mean +- a quantile of the resampled |t|) covers at least as often as the t-interval
    at 20 units on the demo's effects, where the percentile bootstrap falls to 0.90.
    """

    level: float = Field(0.95, gt=0, lt=1)
    bootstrap: int = Field(2000, ge=100)
    bootstrap_method: Literal["symmetric_studentized", "studentized", "bca", "percentile"] = "symmetric_studentized"
    correction: Literal["holm", "bh"] = "holm"
    negligible: float = Field(0.0, ge=0)


class ObservationalConfig(_Section):
    """Data mode: which backdoor estimators the observational source runs, and its propensity model.

    `regression` is g-computation (outcome regression with treatment x covariate
    interactions, averaged over documents); `ipw` weights by the propensity, `aipw`
    combines both (doubly robust), `matching` pairs documents on the propensity score,
    `exact_matching` within strata of the adjustment set. `propensity: logistic` is
    unpenalised (a penalised fit biases the weights); `logistic_l2` is sklearn's default.
    """

    estimators: list[Literal["regression", "ipw", "aipw", "matching", "exact_matching"]] = Field(
        default_factory=lambda: ["regression", "ipw", "aipw", "matching"], min_length=1
    )
    propensity: Literal["logistic", "logistic_l2", "gradient_boosting"] = "logistic"

    @field_validator("estimators")
    @classmethod
    def _distinct_estimators(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"estimators must be distinct; got {value}")
        return value


class HypothesisConfig(_Section):
    """A pre-registered claim about one effect, judged after the run.

    `effect` reads `treatment[a vs b]` or `treatment[*]` (every contrast of the treatment).
    Give `direction` (with `min_effect`, the smallest effect of interest) or `equivalence`
    (the margin of a two one-sided test), not both. The claim is about `outcome` (default: the first).
    """

    id: str = Field(min_length=1)
    claim: str = Field(min_length=1)
    effect: str
    estimand: Literal["total", "direct"] = "total"
    direction: Literal["positive", "negative"] | None = None
    min_effect: float = Field(0.0, ge=0)
    equivalence: float | None = Field(None, gt=0)
    outcome: str | None = None

    @model_validator(mode="after")
    def _one_test(self) -> HypothesisConfig:
        if (self.direction is None) == (self.equivalence is None):
            raise ValueError(
                "give exactly one of direction (positive | negative, with min_effect) or equivalence (a margin)"
            )
        if self.equivalence is not None and self.min_effect:
            raise ValueError("min_effect belongs to a directional claim; an equivalence claim has only its margin")
        return self


class FairnessConfig(_Section):
    """Fairness of the model's decisions over protected factors, and surrogate models of the decisions.

    A unit's decision is positive when its outcome exceeds `threshold`; the default follows
    the outcome type (0 for logits, 0.5 for probabilities and for a generation's share of answers
    parsed to its target; a log-likelihood or an expected value needs one).
    The decisions are read from `outcome` (default: the first).
    """

    protected: list[str] = Field(min_length=1)
    threshold: float | None = None
    outcome: str | None = None
    surrogate_depth: int = Field(3, ge=1, le=8)


class ReportConfig(_Section):
    """The HTML report; `redact_texts` replaces example texts by their sha256 prefix."""

    redact_texts: bool = False


class ExperimentConfig(_Section):
    """A whole experiment, as written in YAML.

    Templated mode renders `prompt` from the structural model; data mode (`data:`)
    reads real documents and makes counterfactuals by `rewrite` rules instead.
    """

    name: str
    model: ModelConfig
    outcome: OutcomeConfig | None = None
    outcomes: list[OutcomeConfig] | None = None
    prompt: PromptConfig | None = None
    data: DataConfig | None = None
    rewrite: dict[str, str] = Field(default_factory=dict)
    pairs: PairsConfig | None = None
    observational: ObservationalConfig | None = None
    factors: dict[str, FactorConfig] = Field(min_length=1)
    graph: GraphConfig
    effects: list[EffectConfig] = Field(min_length=1)
    mediation: list[MediationConfig] = Field(default_factory=list)
    evidence: EvidenceConfig | None = None
    sampling: SamplingConfig = SamplingConfig()
    inference: InferenceConfig = InferenceConfig()
    hypotheses: list[HypothesisConfig] = Field(default_factory=list)
    fairness: FairnessConfig | None = None
    report: ReportConfig = ReportConfig()
    executor: ExecutorConfig = ExecutorConfig()

    @field_validator("name")
    @classmethod
    def _folder_safe(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"name {quoted(value)} must be letters, digits, '_', '-' or '.', as it names the run folder"
            )
        return value

    @model_serializer(mode="wrap")
    def _without_the_other_mode(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave out the unused mode's empty sections, so a templated config dumps (and hashes) as it did
        before data mode existed, and a data-mode config.yaml shows no `prompt: null`."""
        dumped = handler(self)
        for key in ("outcome", "outcomes", "prompt", "data", "rewrite", "pairs", "observational"):
            if dumped.get(key) in (None, {}):
                dumped.pop(key)
        return dumped

    @model_validator(mode="after")
    def _one_outcome_form(self) -> ExperimentConfig:
        if (self.outcome is None) == (self.outcomes is None):
            raise ValueError(
                "give exactly one of outcome (one outcome) or outcomes (a list of outcomes, each with a name)"
                + ("; got both" if self.outcome is not None else "")
            )
        if self.outcomes is not None:
            if not self.outcomes:
                raise ValueError("outcomes is empty; give at least one")
            for index, spec in enumerate(self.outcomes):
                if spec.name is None:
                    raise ValueError(f"outcomes[{index}] needs a name: it labels the outcome in every table")
            repeated = sorted(name for name, count in Counter(s.name for s in self.outcomes).items() if count > 1)
            if repeated:
                raise ValueError(f"outcome names must differ; repeated: {quoted(repeated)}")
        return self

    @property
    def named_outcomes(self) -> tuple[tuple[str, OutcomeConfig], ...]:
        """(name, spec) of every outcome in config order; a lone `outcome` is named after graph.outcome."""
        if self.outcomes is not None:
            return tuple((spec.name, spec) for spec in self.outcomes)
        return ((self.outcome.name or self.graph.outcome, self.outcome),)

    @model_validator(mode="after")
    def _one_mode(self) -> ExperimentConfig:
        if self.data is None:
            if self.prompt is None:
                raise ValueError("prompt is missing: give prompt (templated mode) or data (real documents)")
            for key in ("rewrite", "pairs", "observational"):
                if getattr(self, key):
                    raise ValueError(f"{key} is only used with data: (real documents); add data or remove {key}")
            for index, effect in enumerate(self.effects):
                for key in ("sources", "directions"):
                    if getattr(effect, key):
                        raise ValueError(
                            f"effects[{index}].{key} is only used with data: (real documents); "
                            "a templated run's effects come from rendered counterfactuals"
                        )
        elif self.prompt is not None:
            raise ValueError(
                "prompt is not used with data: the documents are the prompts; remove prompt "
                "(put a question to append to every document in data.suffix)"
            )
        return self


def _dotted(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, str) and len(part) > _PATH_PART_LIMIT:
            part = f"{part[: _PATH_PART_LIMIT - 1]}…"
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_config(data: Any) -> ExperimentConfig:
    """Validate plain YAML data as an experiment config; ConfigError lists the problems with their paths.

    At most MAX_PROBLEMS are listed (a list of 100,000 bad items is one mistake, not 100,000).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as error:
        problems = [_problem(item) for item in error.errors()[:MAX_PROBLEMS]]
        more = error.error_count() - len(problems)
    if len(problems) == 1:
        path, message = problems[0]
        raise ConfigError(message, path=path)
    lines = [f"{path}: {message}" for path, message in problems]
    if more:
        lines.append(f"... and {more:,} more problems of the same config")
    raise ConfigError("\n".join(lines))


def _problem(item: Any) -> tuple[str, str]:
    """(YAML path, message with the bad value quoted at a bounded length) for one pydantic error."""
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] not in ("missing", "value_error"):
        message += f" (got {quoted(item.get('input'))})"
    return _dotted(item["loc"]) or "<config>", message
