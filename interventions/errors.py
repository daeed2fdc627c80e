"""Exceptions raised by `interventions`.

    InterventionError(ValueError)
    ├── TemplateError        a prompt template cannot be parsed or rendered
    ├── ModelLoadError       a model spec cannot be turned into a loaded model
    └── AnswerTokenError     an answer that must be one token is several (or none)
"""


class InterventionError(ValueError):
    """Invalid input to text rendering, model loading or outcome evaluation."""


class TemplateError(InterventionError):
    """A prompt template is malformed, or a render lacks a slot's surface form."""


class ModelLoadError(InterventionError):
    """A model cannot be loaded; the message names the path or hub id and the cause."""


class AnswerTokenError(InterventionError):
    """An answer string is not a single token; the message shows its tokens."""
