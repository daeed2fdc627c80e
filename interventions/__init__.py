"""Counterfactual texts and model outcomes: templates, model loading, outcome evaluation."""

from interventions._adapter import ModelAdapter, ModelSpec
from interventions._evaluate import evaluate_outcomes
from interventions._render_world import render_world
from interventions._outcomes import (
    AnswerProb,
    ClassLogit,
    ClassProb,
    ContinuationLogProb,
    LogitDiff,
    Outcome,
)
from interventions._template import RenderedText, Template
from interventions.errors import (
    AnswerTokenError,
    InterventionError,
    ModelLoadError,
    TemplateError,
)

__all__ = [
    "Template",
    "RenderedText",
    "render_world",
    "ModelSpec",
    "ModelAdapter",
    "LogitDiff",
    "AnswerProb",
    "ClassProb",
    "ClassLogit",
    "ContinuationLogProb",
    "Outcome",
    "evaluate_outcomes",
    "InterventionError",
    "TemplateError",
    "ModelLoadError",
    "AnswerTokenError",
]
