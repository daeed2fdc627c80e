"""Exceptions raised by `interventions`.

InterventionError(ValueError)
├── TemplateError        a prompt template cannot be parsed or rendered
├── ModelLoadError       a model spec cannot be turned into a loaded model
├── AnswerTokenError     an answer that must be one token is several (or none)
└── RewriteError         a document cannot be rewritten to another value of a factor
"""

from typing import Literal

RewriteReason = Literal["not_located", "value_mismatch", "outside_spans", "unknown_value"]


class InterventionError(ValueError):
    """Invalid input to text rendering or rewriting, model loading or outcome evaluation."""


class TemplateError(InterventionError):
    """A prompt template is malformed, or a render lacks a slot's surface form."""


class ModelLoadError(InterventionError):
    """A model cannot be loaded; the message names the path or hub id and the cause."""


class AnswerTokenError(InterventionError):
    """An answer string is not a single token; the message shows its tokens."""


class RewriteError(InterventionError):
    """A document cannot be rewritten; `reason` says why, so runs count exclusions by it.

    not_located: no form of any value appears; value_mismatch: only other values' forms
    appear; outside_spans: the texts differ outside the recorded spans; unknown_value: a
    value the rules do not know.
    """

    def __init__(self, reason: RewriteReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[RewriteReason, str]]:
        return type(self), (self.reason, str(self))
