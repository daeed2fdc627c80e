"""Counterfactual texts, model outcomes, activation patching, and attention/saliency/probe readouts."""

from interventions._adapter import ModelAdapter, ModelSpec
from interventions._alignment import AlignedPair, align
from interventions._attention import AttentionEvidence, attention_evidence, eager_attention
from interventions._attribution import attribution_effects
from interventions._evaluate import evaluate_outcomes
from interventions._outcomes import (
    AnswerProb,
    ClassLogit,
    ClassProb,
    ContinuationLogProb,
    LogitDiff,
    Outcome,
)
from interventions._patching import PatchResult, patch_effects
from interventions._probes import ProbeEvidence, probe_factors
from interventions._render_world import render_world
from interventions._rewrite import Rewrite, RewriteRules
from interventions._saliency import SaliencyEvidence, gradient_x_input, integrated_gradients
from interventions._sites import Architecture, Site, architecture_of, model_sites
from interventions._template import RenderedText, Template
from interventions._token_view import render_token_view, token_view
from interventions.errors import (
    AnswerTokenError,
    InterventionError,
    ModelLoadError,
    RewriteError,
    TemplateError,
)

__all__ = [
    "Template",
    "RenderedText",
    "render_world",
    "RewriteRules",
    "Rewrite",
    "ModelSpec",
    "ModelAdapter",
    "LogitDiff",
    "AnswerProb",
    "ClassProb",
    "ClassLogit",
    "ContinuationLogProb",
    "Outcome",
    "evaluate_outcomes",
    "Site",
    "Architecture",
    "architecture_of",
    "model_sites",
    "AlignedPair",
    "align",
    "PatchResult",
    "patch_effects",
    "attribution_effects",
    "AttentionEvidence",
    "attention_evidence",
    "eager_attention",
    "SaliencyEvidence",
    "gradient_x_input",
    "integrated_gradients",
    "ProbeEvidence",
    "probe_factors",
    "token_view",
    "render_token_view",
    "InterventionError",
    "TemplateError",
    "ModelLoadError",
    "AnswerTokenError",
    "RewriteError",
]
