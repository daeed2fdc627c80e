"""Counterfactual texts, model outcomes, activation patching, and attention/saliency/probe readouts.

Public names load with their module on first use (PEP 562), so what compiles a config
(templates, rewrite rules, `ModelSpec`, outcome specs, errors) imports neither torch nor transformers.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "_template": ("Template", "RenderedText"),
    "_render_world": ("render_world",),
    "_rewrite": ("RewriteRules", "Rewrite"),
    "_spec": ("ModelSpec",),
    "_adapter": ("ModelAdapter",),
    "_outcomes": ("LogitDiff", "AnswerProb", "ClassProb", "ClassLogit", "ContinuationLogProb", "Outcome"),
    "_evaluate": ("evaluate_outcomes",),
    "_sites": ("Site", "Architecture", "architecture_of", "model_sites"),
    "_alignment": ("AlignedPair", "align"),
    "_patching": ("PatchResult", "patch_effects"),
    "_attribution": ("attribution_effects",),
    "_attention": ("AttentionEvidence", "attention_evidence", "eager_attention"),
    "_saliency": ("SaliencyEvidence", "gradient_x_input", "integrated_gradients"),
    "_probes": ("ProbeEvidence", "probe_factors"),
    "_token_view": ("token_view", "render_token_view"),
    "errors": ("InterventionError", "TemplateError", "ModelLoadError", "AnswerTokenError", "RewriteError"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

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


def __getattr__(name: str) -> Any:
    """Import the module of a public name on its first use and keep the name here."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
