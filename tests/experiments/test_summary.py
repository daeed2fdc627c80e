"""summary.md from constructed effect tables: escaped user strings, intact tables, and readings that cannot mislead.

No model runs: the experiment is compiled from a config (the model is never loaded) and its
effects are estimated from paired differences built to have known properties.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from causal import EffectTable, estimate_paired_effects, fit_surrogates, group_fairness, judge_hypotheses
from experiments import Experiment, compile_config, parse_config
from experiments.report import render_summary
from experiments.steps import ReviewResult

INJECTION = "<script>alert(1)</script>"
PIPED = "a|b\nc"
MANIFEST = {"model_fingerprint": "f" * 64, "device": "cpu", "n_units": 200, "config_hash": "c" * 64}


def _experiment(**sections: Any) -> Experiment:
    config = {
        "name": "escaping",
        "model": {"id": "builtin:triage-demo"},
        "outcome": {"type": "logit_diff", "answers": {"positive": " yes", "negative": " no"}},
        "prompt": {"template": "A {sex} with {insurance} insurance. Refer? Answer:"},
        "factors": {
            "sex": {"values": {"female": ["woman"], PIPED: ["man"]}},
            "insurance": {"values": {"private": ["private"], INJECTION: ["no"]}},
        },
        "graph": {"edges": ["sex -> decision", "insurance -> decision"]},
        "effects": [{"treatment": "insurance", "moderators": ["sex"]}, {"treatment": "sex"}],
        "hypotheses": [
            {"id": "H|1", "claim": f"insurance {INJECTION} matters", "effect": "insurance[*]", "direction": "negative"}
        ],
        "sampling": {"units": 200, "seed": 0},
        "inference": {"negligible": 0.05, "bootstrap": 200},
        **sections,
    }
    return compile_config(parse_config(config))


def _effects(experiment: Experiment, insurance_by_sex: tuple[float, float], noise: float = 0.001) -> EffectTable:
    """Insurance differences centred on the given effect in each sex stratum (100 units each); sex about 0."""
    rng = np.random.default_rng(0)
    sexes = np.repeat(["female", PIPED], 100)
    centres = np.repeat(insurance_by_sex, 100)
    differences = {
        "insurance": pd.DataFrame({"difference": centres + rng.normal(0, noise, 200), "sex": sexes}),
        "sex": pd.DataFrame({"difference": rng.normal(0, noise, 200)}),
    }
    tables = [
        estimate_paired_effects(
            differences[plan.treatment],
            treatment=plan.treatment,
            contrast=plan.contrast,
            moderators=plan.moderators,
            n_bootstrap=200,
        )
        for plan in experiment.contrasts
    ]
    return EffectTable.concat(tables).corrected("holm")


def _review(experiment: Experiment, effects: EffectTable) -> ReviewResult:
    """Verdicts of the hypotheses; fairness of decisions none of which is positive; a surrogate of other decisions."""
    units = pd.DataFrame({"sex": ["female", PIPED] * 10, "decision": [0] * 20})
    described = pd.DataFrame({"sex": ["x```y", "female"] * 20, "decision": [1, 0] * 20})
    return ReviewResult(
        verdicts=judge_hypotheses(experiment.hypotheses, effects.to_frame()),
        fairness=group_fairness(units, factor="sex"),
        surrogate=fit_surrogates(described, factors=["sex"], seed=0),
        surrogate_skipped=None,
        decision_threshold=0.0,
    )


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row, splitting on `|` that no backslash escapes (as GFM does)."""
    cells, cell, characters = [], "", iter(line.strip().removeprefix("|").removesuffix("|"))
    for character in characters:
        if character == "\\":
            cell += character + next(characters, "")
        elif character == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += character
    return [*cells, cell]


def _tables(summary: str) -> list[list[str]]:
    """Each Markdown table: its header and every line up to the blank line that ends it."""
    lines = summary.splitlines()
    starts = [i for i, line in enumerate(lines[1:], 1) if re.fullmatch(r"(\|---)+\|", line)]
    tables = []
    for start in starts:
        end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
        tables.append(lines[start - 1 : end])
    return tables


@pytest.fixture(scope="module")
def summary() -> str:
    experiment = _experiment()
    effects = _effects(experiment, (-1.0, -1.5))
    return render_summary(experiment, effects, MANIFEST, review=_review(experiment, effects))


def test_user_strings_are_escaped_and_tables_keep_their_cells(summary: str) -> None:
    assert re.search(r"<[A-Za-z/!?]", summary) is None  # no tag or comment can open
    assert "&lt;script>alert(1)&lt;/script>" in summary
    assert "| do(&lt;script>alert(1)&lt;/script>) vs do(private) |" in summary  # the effects table
    assert "| a\\|b c |" in summary  # a stratum: the pipe escaped, the line break a space
    assert "| H\\|1 | insurance &lt;script>alert(1)&lt;/script> matters | `insurance[*]` |" in summary
    tables = _tables(summary)
    assert len(tables) == 5  # hypotheses, effects, insurance by sex, fairness, surrogate fidelity
    for table in tables:
        assert all(line.startswith("|") for line in table), table
        assert {len(_cells(line)) for line in table} == {len(_cells(table[0]))}, table


def test_surrogate_rules_cannot_close_their_fence(summary: str) -> None:
    """A value holding three backticks is fenced by four, so the rules stay one code block."""
    lines = summary.splitlines()
    opening = lines.index("````")
    closing = lines.index("````", opening + 1)
    assert any("x```y" in line for line in lines[opening + 1 : closing])


def test_a_ratio_of_two_zero_rates_reads_undefined_not_met(summary: str) -> None:
    row = next(line for line in summary.splitlines() if "| disparate impact ratio |" in line)
    cells = [cell.strip() for cell in _cells(row)]
    assert cells[3] == "undefined (no positive decisions in either group)"
    assert cells[-1] == ""  # the four-fifths rule: neither met nor violated
    assert "1.000" not in row and "met" not in row


def test_an_underflowing_p_value_is_a_bound_in_the_verdict(summary: str) -> None:
    """The insurance effect is about 70 standard errors below 0: its one-sided p is far below the float floor."""
    reason = next(line for line in summary.splitlines() if line.startswith("- H\\|1: "))
    assert "Holm-adjusted p < 1e-16 < 0.05" in reason  # our own comparison signs stay readable
    assert "p = 0" not in summary


def _heterogeneity_line(summary: str) -> str:
    return next(line for line in summary.splitlines() if line.startswith("Does the effect differ across sex?"))


@pytest.mark.parametrize(
    "insurance_by_sex, noise, reading",
    [
        ((-1.0, -1.004), 0.001, "the strata's effects lie within 0.004 of each other"),
        ((-0.03, 0.03), 0.001, "every stratum's interval lies inside it"),
    ],
)
def test_a_significant_heterogeneity_inside_the_negligible_band_is_read_as_such(
    insurance_by_sex: tuple[float, float], noise: float, reading: str
) -> None:
    experiment = _experiment()
    effects = _effects(experiment, insurance_by_sex, noise)
    line = _heterogeneity_line(render_summary(experiment, effects, MANIFEST))
    assert "p-value <0.001 (adjusted <0.001)" in line
    assert line.endswith(
        f"The differences between strata are significant but within the negligible band (±0.05): {reading}."
    )


@pytest.mark.parametrize(
    "insurance_by_sex, noise, negligible",
    [
        ((-1.0, -1.5), 0.001, 0.05),  # a real difference
        ((-1.0, -1.004), 0.001, 0.0),  # no band declared
        ((-1.0, -1.0), 0.02, 0.05),  # strata 0.002 apart, but not significantly (p 0.34)
    ],
)
def test_other_heterogeneity_tests_get_no_negligible_reading(
    insurance_by_sex: tuple[float, float], noise: float, negligible: float
) -> None:
    experiment = _experiment(inference={"negligible": negligible, "bootstrap": 200})
    line = _heterogeneity_line(render_summary(experiment, _effects(experiment, insurance_by_sex, noise), MANIFEST))
    assert line.startswith("Does the effect differ across sex? Wald test (HC3 robust): statistic ")
    assert "negligible band" not in line


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("<img src=x onerror=alert(2)>", "&lt;img src=x onerror=alert(2)>"),
        ("<!-- hidden -->", "&lt;!-- hidden -->"),
        ("</td>", "&lt;/td>"),
        ("&lt; already an entity", "&amp;lt; already an entity"),
        ("&#60;", "&amp;#60;"),
        ("> a block quote", "&gt; a block quote"),
        ("a|b\\c\r\nd", "a\\|b\\\\c  d"),
        ("p < 0.05 and p >= 0.01, R&D", "p < 0.05 and p >= 0.01, R&D"),
    ],
)
def test_only_what_could_become_markup_is_escaped(value: str, shown: str) -> None:
    from experiments.report._summary import _md

    assert _md(value) == shown
