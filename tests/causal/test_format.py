"""Text of p-values and fairness figures: never "p = 0", never a number for an undefined ratio."""

import math

import pandas as pd
import pytest

from causal import format_fairness_estimate, format_p_value
from causal._format import P_FLOOR, frame_text


@pytest.mark.parametrize(
    "p, options, text",
    [
        (0.0123456, {}, "0.01235"),
        (0.0, {}, "<1e-16"),
        (1e-300, {}, "<1e-16"),
        (P_FLOOR, {}, "1e-16"),
        (math.nan, {}, ""),
        (0.0, {"name": "p"}, "p < 1e-16"),
        (3e-17, {"name": "Holm-adjusted p"}, "Holm-adjusted p < 1e-16"),
        (0.0123456, {"name": "p"}, "p = 0.01235"),
        (math.nan, {"name": "p"}, "p = nan"),
        (0.02, {"spec": ".3f", "floor": 0.001}, "0.020"),
        (0.0004, {"spec": ".3f", "floor": 0.001}, "<0.001"),
        (0.0, {"spec": ".3f", "floor": 0.001}, "<0.001"),
    ],
)
def test_p_values_below_the_floor_read_as_a_bound(p, options, text):
    assert format_p_value(p, **options) == text


def test_frame_text_bounds_p_columns_and_rounds_the_rest():
    frame = pd.DataFrame({"estimate": [0.123456, 2.0], "p_value": [0.0, 0.5], "p_adjusted": [math.nan, 0.75]})
    lines = frame_text(frame).splitlines()
    assert lines[1].split() == ["0.1235", "<1e-16", "NaN"]
    assert lines[2].split() == ["2", "0.5", "0.75"]
    html = frame_text(frame, html=True)
    assert "<td>&lt;1e-16</td>" in html and ">0<" not in html


@pytest.mark.parametrize(
    "metric, estimate, contrast, text",
    [
        ("disparate_impact_ratio", 0.41666, "male vs female", "0.417"),
        ("disparate_impact_ratio", math.nan, "male vs female", "undefined (no positive decisions in either group)"),
        ("disparate_impact_ratio", math.nan, None, "undefined (fewer than two values)"),
        ("demographic_parity_difference", math.nan, math.nan, "undefined (fewer than two values)"),
        ("positive_rate", 0.0, None, "0.000"),
    ],
)
def test_fairness_estimates_say_why_they_are_undefined(metric, estimate, contrast, text):
    assert format_fairness_estimate(metric, estimate, contrast) == text
