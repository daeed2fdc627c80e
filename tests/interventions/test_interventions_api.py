"""The public surface of `interventions` and its import-time behaviour."""

import subprocess
import sys

import interventions
from interventions import (
    AnswerTokenError,
    InterventionError,
    ModelLoadError,
    RewriteError,
    TemplateError,
)


def test_public_names_are_pinned():
    assert interventions.__all__ == [
        "Template",
        "RenderedText",
        "render_world",
        "chat_template",
        "RewriteRules",
        "Rewrite",
        "ModelSpec",
        "ModelAdapter",
        "LogitDiff",
        "AnswerProb",
        "ClassProb",
        "ClassLogit",
        "ContinuationLogProb",
        "ChoiceProb",
        "ExpectedValue",
        "Outcome",
        "evaluate_outcomes",
        "evaluate_outcome_set",
        "Generation",
        "GenerationResult",
        "generate_outcomes",
        "Site",
        "Component",
        "Architecture",
        "architecture_of",
        "model_sites",
        "AlignedPair",
        "align",
        "PatchResult",
        "patch_effects",
        "attribution_effects",
        "PathResult",
        "path_effects",
        "path_patch",
        "model_receivers",
        "SENDERS",
        "EDGE_KEYS",
        "EdgeScreen",
        "edge_attribution_effects",
        "edge_list",
        "screen_edges",
        "strongest_edges",
        "verified_edges",
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


def test_errors_share_one_value_error_base():
    assert issubclass(InterventionError, ValueError)
    for error in (TemplateError, ModelLoadError, AnswerTokenError, RewriteError):
        assert issubclass(error, InterventionError)


def test_import_loads_neither_transformers_nor_causal():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, interventions; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "'transformers'" not in loaded
    assert "'causal'" not in loaded


def test_names_a_config_needs_load_neither_torch_nor_transformers():
    """Compiling a config (and so `paribus validate`) must not pay for torch."""
    script = (
        "import sys\n"
        "from interventions import (AnswerProb, ClassLogit, ClassProb, ContinuationLogProb, InterventionError,\n"
        "    LogitDiff, ModelSpec, Outcome, RenderedText, Rewrite, RewriteRules, Template, TemplateError, render_world)\n"
        "LogitDiff(positive=' yes', negative=' no'); ModelSpec('gpt2', dtype='float16')\n"
        "print(sorted(name for name in ('torch', 'transformers') if name in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_model_spec_is_one_class_wherever_imported():
    from interventions._adapter import ModelSpec

    assert ModelSpec is interventions.ModelSpec
