"""Exceptions raised by `causal`."""


class EstimationError(ValueError):
    """Input to an estimator breaks a rule: empty table, missing column, bad option."""
