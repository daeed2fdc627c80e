"""Turn a validated config into the objects a run needs, checking the rules that span sections.

Stage: config. May import graphs, interventions, causal, experiments.errors and the config stage.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from causal import EstimationError, Hypothesis
from experiments.config._chat import chat_templates
from experiments.config._outcomes import NamedOutcome, compile_outcomes, decision_threshold, referenced_outcome
from experiments.config._quote import MESSAGE_LIMIT, QUOTE_LIMIT, listed, quoted, shortened
from experiments.config._resources import check_resources, physical_memory
from experiments.config._schema import (
    DataConfig,
    EffectConfig,
    ExperimentConfig,
    PromptConfig,
    parse_config,
)
from experiments.config._yaml import load_yaml
from experiments.errors import ConfigError
from graphs import CausalGraph, Factor, GraphError, StructuralModel
from interventions import Generation, InterventionError, ModelSpec, Outcome, RewriteRules, Template, TemplateError


@dataclass(frozen=True)
class Arm:
    """One world every unit is rendered in: factual, or do(treatment=value) with held mediators."""

    treatment: str | None
    value: str | None
    hold: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.treatment is None:
            return "factual"
        held = f"; hold {', '.join(self.hold)}" if self.hold else ""
        return f"do({self.treatment}={self.value}{held})"


@dataclass(frozen=True)
class _TwoArms:
    """A treated and a reference arm of one treatment; effects read treated minus reference."""

    treatment: str
    treated: Arm
    reference: Arm

    @property
    def contrast(self) -> str:
        return f"{self.treated.value} vs {self.reference.value}"


@dataclass(frozen=True)
class ContrastPlan(_TwoArms):
    """One estimate to make: treated arm minus reference arm, overall and per moderator stratum.

    With data, `sources` are where its estimates come from, in the order asked for, and
    `directions` adds the effect on the documents at each factual value of the treatment.
    `sources_given` is False when the sources are the default (every one the data supports):
    then a source with nothing to estimate from (no human edit of this contrast) gives no
    rows rather than a row saying so. A templated run has no sources to choose.
    """

    estimand: str
    moderators: tuple[str, ...]
    sources: tuple[str, ...] = ()
    directions: bool = False
    sources_given: bool = False

    @property
    def interventional(self) -> bool:
        """True when its units are paired counterfactuals: rendered (templated) or rewritten documents."""
        return not self.sources or "rewrite" in self.sources


@dataclass(frozen=True)
class MediationPlan(_TwoArms):
    """A patching sweep: which contrast, which sites and positions, which run receives the patch, which outcome."""

    components: tuple[str, ...]
    layers: tuple[int, ...] | None
    positions: tuple[str, ...]
    direction: str
    method: str
    verify_top: int
    units: int
    path: str
    outcome: str
    senders: tuple[str, ...] = ()
    receivers: tuple[str, ...] = ()

    @property
    def edges(self) -> bool:
        """True for path patching (sender -> receiver edges), False for a sweep over sites."""
        return bool(self.senders)


@dataclass(frozen=True)
class DataPlan:
    """Data mode: the documents file, the human pairs file, and the rewrite rules of each factor.

    Paths are resolved against the config file's folder.
    """

    config: DataConfig
    path: Path
    rules: Mapping[str, RewriteRules]
    pairs: Path | None = None
    rule_files: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """A config compiled into graph, structural model, templates, model spec, outcomes and contrasts.

    A data-mode experiment (`data` set) has no structural model and no templates: its
    units are documents and its counterfactuals are rewrites. `decision_threshold` is
    fairness's, on the outcome it names.
    """

    config: ExperimentConfig
    graph: CausalGraph
    model: StructuralModel | None
    templates: tuple[Template, ...]
    model_spec: ModelSpec
    outcomes: tuple[NamedOutcome, ...]
    contrasts: tuple[ContrastPlan, ...]
    mediation: tuple[MediationPlan, ...] = ()
    data: DataPlan | None = None
    hypotheses: tuple[Hypothesis, ...] = ()
    decision_threshold: float | None = None

    @property
    def outcome(self) -> Outcome | Generation:
        """The first outcome's reader: the one a section uses unless it names another."""
        return self.outcomes[0].reader

    @property
    def readers(self) -> dict[str, Outcome | Generation]:
        """Every outcome's reader by name, in config order."""
        return {outcome.name: outcome.reader for outcome in self.outcomes}

    def named(self, name: str | None) -> NamedOutcome:
        """The outcome a section names (a name the compiled config already checked); None: the first."""
        return next((outcome for outcome in self.outcomes if outcome.name == name), self.outcomes[0])

    @property
    def evidence_outcome(self) -> NamedOutcome:
        """The outcome saliency reads and evidence is linked to: evidence.outcome, default the first."""
        evidence = self.config.evidence
        return self.named(None if evidence is None else evidence.outcome)

    def negligible(self, name: str | None) -> float:
        """The negligible band of an outcome, in its units: its own `negligible`, else inference.negligible."""
        own = self.named(name).spec.negligible
        return self.config.inference.negligible if own is None else own

    @property
    def arms(self) -> tuple[Arm, ...]:
        """Every distinct arm: factual first, then each contrast's arms in order."""
        arms: dict[Arm, None] = {Arm(None, None): None}
        for plan in self.contrasts:
            arms.setdefault(plan.treated)
            arms.setdefault(plan.reference)
        return tuple(arms)


def load_experiment(path: str | Path, *, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Experiment:
    """Read, validate and compile a YAML config; `overrides` replace keys per section (CLI flags)."""
    data = load_yaml(path)
    if isinstance(data, dict):
        for section, values in (overrides or {}).items():
            current = data.get(section)
            if current is None or isinstance(current, dict):  # else the schema reports the section's type
                data[section] = {**(current or {}), **values}
    return compile_config(parse_config(data), base_dir=Path(path).parent)


def compile_config(config: ExperimentConfig, *, base_dir: str | Path | None = None) -> Experiment:
    """Check cross-section rules and build the run's objects; ConfigError names the YAML path.

    `base_dir` is where relative data, pairs and rule files lie (the config file's folder;
    default the working directory). Sizes are checked against this machine's memory.
    """
    try:
        return _compile(config, Path(base_dir or "."))
    except ConfigError as error:
        # Names and values quoted from graphs, interventions or causal are not cut at the source.
        if len(str(error)) <= MESSAGE_LIMIT:
            raise
        path = None if error.path is None else shortened(error.path, limit=QUOTE_LIMIT)
        raise ConfigError(shortened(error.reason), path=path) from None


def _compile(config: ExperimentConfig, base_dir: Path) -> Experiment:
    names = list(config.factors)
    graph = _with_path("graph", lambda: CausalGraph.from_edges(names, config.graph.outcome, config.graph.edges))
    if config.data is None:
        factors = [_factor(name, config, graph) for name in names]
        model_path = _model_path(config.model.id, base_dir)
        templates = chat_templates(config, model_path) if config.prompt.conversations else ()
        templates = _templates(config, names, templates)
        structural = _with_path("factors", lambda: StructuralModel(graph, factors, n_templates=len(templates)))
        data = None
    else:
        structural, templates = None, ()
        data = _data_plan(config, config.data, graph, base_dir)
    outcomes = compile_outcomes(config)
    mediation = tuple(_mediation_plan(index, config, outcomes) for index in range(len(config.mediation)))
    if config.evidence is not None:
        _forward_pass_outcome(outcomes, config.evidence.outcome, "evidence")
    if data is not None:
        _check_data_effects(config, data.config, graph, mediation)
    contrasts = tuple(
        plan for index, effect in enumerate(config.effects) for plan in _plans(index, effect, config, graph, data)
    )
    experiment = Experiment(
        config=config,
        graph=graph,
        model=structural,
        templates=templates,
        model_spec=_model_spec(config, base_dir),
        outcomes=outcomes,
        contrasts=contrasts,
        mediation=mediation,
        data=data,
        hypotheses=_hypotheses(config, contrasts, outcomes),
        decision_threshold=_decision_threshold(config, outcomes),
    )
    check_resources(config, n_arms=len(experiment.arms), memory=physical_memory())
    return experiment


def _with_path(prefix: str, build: Any) -> Any:
    """Run a graphs constructor, re-raising its GraphError under the config's YAML path."""
    try:
        return build()
    except GraphError as error:
        path = f"{prefix}.{error.path}" if error.path else prefix
        raise ConfigError(shortened(str(error)), path=path) from None


def _factor(name: str, config: ExperimentConfig, graph: CausalGraph) -> Factor:
    spec = config.factors[name]
    _check_distinct_forms(name, spec.values)
    order = _parents(name, config, graph)
    parent_values = {parent: tuple(config.factors[parent].values) for parent in order}
    return _with_path(
        "factors",
        lambda: Factor.create(
            name, spec.values, parents=order, parent_values=parent_values, distribution=spec.distribution
        ),
    )


def _check_distinct_forms(name: str, values: Mapping[str, list[str]]) -> None:
    """Each surface form realizes one value: a form shared by two values makes their texts alike, so an
    effect between them reads as 0 by construction (a typo that would pass an equivalence test)."""
    owner: dict[str, str] = {}
    for value, forms in values.items():
        for form in forms:
            first = owner.setdefault(form, value)
            if first != value:
                raise ConfigError(
                    f"{quoted(first)} and {quoted(value)} share the surface form {quoted(form)}; a text with it "
                    "cannot say which value it realizes, and an effect between them would be 0 by construction; "
                    "give each value its own forms",
                    path=f"factors.{name}.values",
                )


def _parents(name: str, config: ExperimentConfig, graph: CausalGraph) -> tuple[str, ...]:
    """The factor's parents, in its own order when given; they must agree with the graph's."""
    spec = config.factors[name]
    parents = graph.parents(name)
    if spec.parents is not None and set(spec.parents) != set(parents):
        raise ConfigError(
            f"parents {quoted(spec.parents)} differ from the graph's parents {list(parents)}; "
            "make graph.edges and this list agree (or omit parents to take them from the graph)",
            path=f"factors.{name}.parents",
        )
    return tuple(spec.parents) if spec.parents is not None else parents


def _data_plan(config: ExperimentConfig, data: DataConfig, graph: CausalGraph, base_dir: Path) -> DataPlan:
    """Data-mode sections checked against the factors; rewrite rule files are read here, so `validate` sees them."""
    names = list(config.factors)
    for name, spec in config.factors.items():
        _parents(name, config, graph)
        if spec.distribution is not None:
            raise ConfigError(
                "distribution is not used with data: the documents carry the values; remove it",
                path=f"factors.{name}.distribution",
            )
    for name in data.factors:
        if name not in config.factors:
            raise ConfigError(f"{quoted(name)} is not a factor{_suggest(name, names)}", path=f"data.factors.{name}")
    if config.sampling.mode == "exact":
        raise ConfigError(
            "exact mode enumerates a structural model; with data: the documents are the units; "
            "use mode: sample (or omit sampling)",
            path="sampling.mode",
        )
    rules = {}
    for name, source in config.rewrite.items():
        if name not in data.factors:
            raise ConfigError(
                f"{quoted(name)} is not an annotated factor (data.factors: {listed(data.factors)}); "
                "only annotated factors can be rewritten",
                path=f"rewrite.{name}",
            )
        rules[name] = _rules(name, source, config, base_dir)
    return DataPlan(
        config=data,
        path=_resolve(data.path, base_dir),
        rules=rules,
        pairs=None if config.pairs is None else _resolve(config.pairs.path, base_dir),
        rule_files={
            name: _resolve(source, base_dir)
            for name, source in config.rewrite.items()
            if not source.startswith("builtin:")
        },
    )


def stored_config(experiment: Experiment) -> ExperimentConfig:
    """The config as a run folder keeps it: model folder, data, pairs and rule-file paths absolute, so the copy runs anywhere.

    A chat prompt is kept as the templates the tokenizer rendered, so the copy needs no tokenizer.

    `paribus report` and `paribus compare` compile the run folder's copy, which lies
    elsewhere than the config it was written from.
    """
    config, plan = experiment.config, experiment.data
    if config.prompt is not None and config.prompt.conversations:
        rendered = [template.text for template in experiment.templates]
        prompt = PromptConfig(templates=rendered) if len(rendered) > 1 else PromptConfig(template=rendered[0])
        config = config.model_copy(update={"prompt": prompt})
    if experiment.model_spec.path != config.model.id or config.model.offload_folder is not None:
        placed = {"id": experiment.model_spec.path, "offload_folder": experiment.model_spec.offload_folder}
        config = config.model_copy(update={"model": config.model.model_copy(update=placed)})
    if plan is None:
        return config
    return config.model_copy(
        update={
            "data": plan.config.model_copy(update={"path": str(plan.path.resolve())}),
            "rewrite": {
                name: str(plan.rule_files[name].resolve()) if name in plan.rule_files else source
                for name, source in config.rewrite.items()
            },
            "pairs": None
            if plan.pairs is None
            else config.pairs.model_copy(update={"path": str(plan.pairs.resolve())}),
        }
    )


def _model_spec(config: ExperimentConfig, base_dir: Path) -> ModelSpec:
    """How to load the model; ModelSpec's own checks (a device_map beside a device, quantization on CPU) name model."""
    spec = dict(
        path=_model_path(config.model.id, base_dir),
        task=config.model.task,
        device=config.model.device,
        dtype=config.model.dtype,
        trust_remote_code=config.model.trust_remote_code,
        revision=config.model.revision,
        device_map=config.model.device_map,
        max_memory=_gpu_indices(config.model.max_memory),
        offload_folder=None
        if config.model.offload_folder is None
        else str(_resolve(config.model.offload_folder, base_dir)),
        quantization=config.model.quantization,
    )
    if config.model.quantization is not None and not _cuda_available():
        raise ConfigError(
            f"{config.model.quantization} weights are loaded by bitsandbytes on CUDA, and this machine has no CUDA; "
            "remove quantization, or run on a machine with a GPU",
            path="model.quantization",
        )
    try:
        return ModelSpec(**spec)
    except InterventionError as error:
        raise ConfigError(shortened(str(error)), path="model") from None


def _cuda_available() -> bool:
    """Whether torch sees a GPU; torch is imported only for a config that asks for quantization."""
    import torch

    return torch.cuda.is_available()


def _gpu_indices(max_memory: Mapping[str, str | int] | None) -> dict[str | int, str | int] | None:
    """max_memory as accelerate reads it: GPU keys ("0", "cuda:1") as indices, cpu and disk as named."""
    if max_memory is None:
        return None
    return {
        int(key.removeprefix("cuda:")) if key.removeprefix("cuda:").isdigit() else key: value
        for key, value in max_memory.items()
    }


def _model_path(model_id: str, base_dir: Path) -> str:
    """model.id as loaded: a folder relative to the config file, as data paths are; a built-in or hub id as written.

    A relative id is a folder when it exists next to the config or is written as a path
    (`./model`, `../models/x`); otherwise it is a hub id (`org/name`), which only a cache
    or a download can provide.
    """
    if model_id.startswith("builtin:") or Path(model_id).is_absolute():
        return model_id
    candidate = base_dir / model_id
    if candidate.exists() or model_id.startswith(("./", "../", ".\\", "..\\")):
        return str(candidate.resolve())
    return model_id


def _resolve(path: str, base_dir: Path) -> Path:
    return Path(path) if Path(path).is_absolute() else base_dir / path


def _rules(name: str, source: str, config: ExperimentConfig, base_dir: Path) -> RewriteRules:
    """Load one factor's rewrite rules; the rules must know every value the factor declares."""
    builtin = source.startswith("builtin:")
    try:
        rules = RewriteRules.load(source if builtin else _resolve(source, base_dir), factor=name)
    except InterventionError as error:
        raise ConfigError(shortened(str(error)), path=f"rewrite.{name}") from None
    unknown = [value for value in config.factors[name].values if value not in rules.values]
    if unknown:
        raise ConfigError(
            f"the rules {quoted(source)} know the values {quoted(list(rules.values))}, not {quoted(unknown)}; "
            f"name factor {name}'s values as the rules do, or extend the rules",
            path=f"rewrite.{name}",
        )
    return rules


def _check_data_effects(
    config: ExperimentConfig, data: DataConfig, graph: CausalGraph, mediation: tuple[MediationPlan, ...]
) -> None:
    """Data-mode rules: treatments and moderators annotated, treatments rewritable, estimands a rewrite can give.

    A rewrite changes only the treatment's words, so every mediator written in the
    document keeps its factual value: with mediators that is the direct effect.
    """
    for index, effect in enumerate(config.effects):
        path = f"effects[{index}]"
        _check_annotated(effect.treatment, data, f"{path}.treatment")
        rewritten = "rewrite" in (effect.sources or (["rewrite"] if effect.treatment in config.rewrite else []))
        if effect.moderators and not rewritten:
            raise ConfigError(
                "moderators split the rewritten documents' paired differences, and this effect has no rewrite "
                f"source; add rewrite.{effect.treatment} rules (and rewrite to sources) or remove moderators",
                path=f"{path}.moderators",
            )
        for moderator in effect.moderators:
            if moderator not in data.factors:
                raise ConfigError(
                    f"moderator {quoted(moderator)} is not annotated; add it to data.factors", path=f"{path}.moderators"
                )
        mediators = graph.mediators(effect.treatment)
        if effect.estimand == "total" and mediators and rewritten:
            raise ConfigError(
                f"a rewrite changes only {effect.treatment}'s words, so its mediators {list(mediators)} keep their "
                "factual values: that is the direct effect; write estimand: direct",
                path=f"{path}.estimand",
            )
        if effect.estimand == "direct" and effect.hold is not None and set(effect.hold) != set(mediators):
            raise ConfigError(
                f"a rewrite holds every mediator {list(mediators)} at its factual value; omit hold", path=f"{path}.hold"
            )
    for plan in mediation:
        _check_annotated(plan.treatment, data, f"{plan.path}.treatment")
        _check_rules(plan.treatment, config, f"{plan.path}.treatment")
        if plan.method != "exact":
            raise ConfigError("with data: patching sweeps run exactly; use method: exact", path=f"{plan.path}.method")
        other = [position for position in plan.positions if position not in ("factor", "last", "all")]
        if other:
            raise ConfigError(
                f"positions {quoted(other)}: a rewrite records spans of the treatment only; use factor, last or all",
                path=f"{plan.path}.positions",
            )


def _check_annotated(treatment: str, data: DataConfig, path: str) -> None:
    if treatment not in data.factors:
        raise ConfigError(
            f"treatment {quoted(treatment)} is not annotated in the documents; add it to data.factors", path=path
        )


def _check_rules(treatment: str, config: ExperimentConfig, path: str) -> None:
    if treatment not in config.rewrite:
        raise ConfigError(
            f"treatment {quoted(treatment)} has no rewrite rules; add rewrite.{treatment} (builtin:sex or a rules file)",
            path=path,
        )


def _templates(config: ExperimentConfig, names: list[str], rendered: tuple[Template, ...]) -> tuple[Template, ...]:
    """The prompt's templates (`rendered`: those of a chat prompt), with every slot a factor and every factor a slot."""
    prompt = config.prompt
    single = prompt.template is not None or prompt.chat is not None
    key = "chat" if prompt.conversations else "template"
    texts = [template.text for template in rendered] or list(prompt.variants)
    templates = []
    for index, text in enumerate(texts):
        path = f"prompt.{key}" if single else f"prompt.{key}s[{index}]"
        try:
            template = Template.parse(text)
        except TemplateError as error:
            raise ConfigError(shortened(str(error)), path=path) from None
        for slot in template.slots:
            if slot not in names:
                raise ConfigError(f"slot {{{slot}}} is not a factor{_suggest(slot, names)}", path=path)
        templates.append(template)
    slots = {slot for template in templates for slot in template.slots}
    for name in names:
        if name not in slots:
            raise ConfigError(
                f"factor {quoted(name)} appears in no template, so no intervention on it can change the text; "
                f"add {{{name}}} to the prompt",
                path=f"factors.{name}",
            )
    return tuple(templates)


def _plans(
    index: int, effect: EffectConfig, config: ExperimentConfig, graph: CausalGraph, data: DataPlan | None
) -> Iterable[ContrastPlan]:
    path = f"effects[{index}]"
    names = list(config.factors)
    _check_contrast(path, effect.treatment, effect.contrast, config)
    values = list(config.factors[effect.treatment].values)
    for moderator in effect.moderators:
        if moderator not in config.factors or moderator == effect.treatment:
            raise ConfigError(
                f"moderator {quoted(moderator)} must be a factor other than the treatment{_suggest(moderator, names)}",
                path=f"{path}.moderators",
            )
    hold = _hold(path, effect, graph)
    sources = () if data is None else _sources(path, effect, config, data)
    pairs = [tuple(effect.contrast)] if effect.contrast else [(value, values[0]) for value in values[1:]]
    for treated, reference in pairs:
        yield ContrastPlan(
            treatment=effect.treatment,
            treated=Arm(effect.treatment, treated, hold),
            reference=Arm(effect.treatment, reference, hold),
            estimand=effect.estimand,
            moderators=tuple(effect.moderators),
            sources=sources,
            directions=effect.directions,
            sources_given=effect.sources is not None,
        )


def _sources(path: str, effect: EffectConfig, config: ExperimentConfig, data: DataPlan) -> tuple[str, ...]:
    """Where a data-mode effect's estimates come from: those asked for, checked; else every source the data supports."""
    treatment = effect.treatment
    available = {
        "rewrite": treatment in data.rules,
        "observational": effect.estimand == "total",
        "human_pairs": data.pairs is not None,
    }
    if effect.sources is None:
        sources = tuple(source for source, usable in available.items() if usable)
        if not sources:
            raise ConfigError(
                f"{treatment} has no source of estimates: no rewrite rules (add rewrite.{treatment}), "
                "no observational estimate of a direct effect, and no pairs file",
                path=f"{path}.sources",
            )
        return sources
    why = {
        "rewrite": f"{treatment} has no rewrite rules; add rewrite.{treatment} (builtin:sex or a rules file)",
        "observational": "dowhy's backdoor estimate is a total effect, and this effect is direct; "
        "remove observational or write estimand: total",
        "human_pairs": "no pairs file is given; add pairs.path",
    }
    for source in effect.sources:
        if not available[source]:
            raise ConfigError(f"source {source}: {why[source]}", path=f"{path}.sources")
    return tuple(effect.sources)


def _forward_pass_outcome(outcomes: tuple[NamedOutcome, ...], name: str | None, section: str) -> NamedOutcome:
    """The outcome a patching sweep or evidence reads: it must come from one forward pass's logits."""
    outcome = referenced_outcome(outcomes, name, f"{section}.outcome")
    if outcome.generated:
        raise ConfigError(
            f"patching and evidence read one forward pass's logits, and the outcome {quoted(outcome.name)} is "
            "generated token by token; name another outcome (choice_prob reads options of any length) "
            f"under {section}.outcome, or remove {section.split('[')[0]}",
            path=f"{section}.outcome" if name is not None else section,
        )
    return outcome


def _mediation_plan(index: int, config: ExperimentConfig, outcomes: tuple[NamedOutcome, ...]) -> MediationPlan:
    spec = config.mediation[index]
    path = f"mediation[{index}]"
    outcome = _forward_pass_outcome(outcomes, spec.outcome, path)
    names = list(config.factors)
    _check_contrast(path, spec.treatment, spec.contrast, config)
    for position in spec.positions:
        factor = position.removeprefix("factor:")
        if position.startswith("factor:") and factor not in config.factors:
            raise ConfigError(
                f"position {quoted(position)} names no factor{_suggest(factor, names)}", path=f"{path}.positions"
            )
    treated, reference = spec.contrast
    return MediationPlan(
        treatment=spec.treatment,
        treated=Arm(spec.treatment, treated),
        reference=Arm(spec.treatment, reference),
        components=tuple(spec.components),
        layers=None if spec.layers is None else tuple(spec.layers),
        positions=tuple(spec.positions),
        direction=spec.direction,
        method=spec.method,
        verify_top=spec.verify_top,
        units=spec.units,
        path=path,
        outcome=outcome.name,
        senders=() if spec.paths is None else tuple(spec.paths.senders),
        receivers=() if spec.paths is None else tuple(spec.paths.receivers),
    )


def _check_contrast(path: str, treatment: str, contrast: list[str] | None, config: ExperimentConfig) -> None:
    """The treatment is a factor and each contrast value is one of its values."""
    names = list(config.factors)
    if treatment not in config.factors:
        raise ConfigError(
            f"treatment {quoted(treatment)} is not a factor{_suggest(treatment, names)}", path=f"{path}.treatment"
        )
    values = list(config.factors[treatment].values)
    for value in contrast or ():
        if value not in values:
            raise ConfigError(
                f"{quoted(value)} is not a value of {treatment} ({listed(values)})", path=f"{path}.contrast"
            )


def _hold(path: str, effect: EffectConfig, graph: CausalGraph) -> tuple[str, ...]:
    """Mediators held at their factual values: none for a total effect, all (or the named ones) for a direct one."""
    if effect.estimand == "total":
        if effect.hold:
            raise ConfigError("hold is only used with estimand: direct", path=f"{path}.hold")
        return ()
    descendants = graph.descendants(effect.treatment) - {graph.outcome}
    if effect.hold is None:
        hold = graph.mediators(effect.treatment)
        if not hold:
            raise ConfigError(
                f"{effect.treatment} has no mediators on a path to {graph.outcome}, so its direct effect is its "
                "total effect; use estimand: total",
                path=f"{path}.estimand",
            )
        return tuple(hold)
    for name in effect.hold:
        if name not in descendants:
            raise ConfigError(
                f"{quoted(name)} is not a descendant of {effect.treatment}, so holding it changes nothing; "
                f"descendants: {sorted(descendants) or 'none'}",
                path=f"{path}.hold",
            )
    return tuple(effect.hold)


def _hypotheses(
    config: ExperimentConfig, contrasts: tuple[ContrastPlan, ...], outcomes: tuple[NamedOutcome, ...]
) -> tuple[Hypothesis, ...]:
    """Each hypothesis must name an effect the config estimates, and an outcome it has; ids are unique."""
    hypotheses: list[Hypothesis] = []
    for index, spec in enumerate(config.hypotheses):
        path = f"hypotheses[{index}]"
        if spec.id in {known.id for known in hypotheses}:
            raise ConfigError(
                f"id {quoted(spec.id)} is used by an earlier hypothesis; give each a distinct id", path=f"{path}.id"
            )
        try:
            treatment, contrast = Hypothesis.parse_effect(spec.effect)
        except EstimationError as error:
            raise ConfigError(shortened(str(error)), path=f"{path}.effect") from None
        judged = [plan for plan in contrasts if plan.interventional]
        estimated = [plan.contrast for plan in judged if plan.treatment == treatment and plan.estimand == spec.estimand]
        if not estimated or (contrast is not None and contrast not in estimated):
            known = sorted(
                {
                    f"{plan.treatment}[{plan.contrast}]" + ("" if plan.estimand == "total" else f" ({plan.estimand})")
                    for plan in judged
                }
            )
            rewritten = " (with data, a hypothesis is judged on an effect's rewrite rows)" if config.data else ""
            raise ConfigError(
                f"{quoted(spec.effect)} ({spec.estimand}) is not among the effects this config estimates"
                f"{rewritten}: {listed(known)}; name one of them, or add it under effects",
                path=f"{path}.effect",
            )
        hypotheses.append(
            Hypothesis(
                id=spec.id,
                claim=spec.claim,
                treatment=treatment,
                contrast=contrast,
                direction=spec.direction,
                min_effect=spec.min_effect,
                equivalence=spec.equivalence,
                estimand=spec.estimand,
                outcome=referenced_outcome(outcomes, spec.outcome, f"{path}.outcome").name,
            )
        )
    return tuple(hypotheses)


def _decision_threshold(config: ExperimentConfig, outcomes: tuple[NamedOutcome, ...]) -> float | None:
    """The value of fairness.outcome above which a decision is positive: the config's, else the outcome type's."""
    if config.fairness is None:
        return None
    for index, name in enumerate(config.fairness.protected):
        if name not in config.factors:
            raise ConfigError(
                f"{quoted(name)} is not a factor{_suggest(name, list(config.factors))}",
                path=f"fairness.protected[{index}]",
            )
        if config.data is not None and name not in config.data.factors:
            raise ConfigError(
                f"{quoted(name)} is not annotated in the documents: fairness needs each document's value; "
                f"annotated are {sorted(config.data.factors)}",
                path=f"fairness.protected[{index}]",
            )
    outcome = referenced_outcome(outcomes, config.fairness.outcome, "fairness.outcome")
    return decision_threshold(outcome, config.fairness.threshold)


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; factors: {listed(options)}"
