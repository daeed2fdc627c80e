"""Counterfactual texts, model outcomes, activation patching, and attention/saliency/probe readouts.

Public names load with their module on first use (PEP 562), so what compiles a config
(templates, rewrite rules, `ModelSpec`, outcome specs, errors) imports neither torch nor transformers.
"""

from graphs._lazy import lazy_exports

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
_MODULE_OF, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

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
