"""Gradient x input and integrated gradients on the input embeddings, checked against
identities (completeness, the gradient product) and a model with a planted mechanism."""

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from causal import estimate_paired_effects
from causal._linking import link_evidence
from interventions import (
    ClassLogit,
    ContinuationLogProb,
    InterventionError,
    LogitDiff,
    ModelAdapter,
    ModelSpec,
    Template,
    evaluate_outcomes,
)
from interventions._saliency import gradient_x_input, integrated_gradients

YES_NO = LogitDiff(" yes", " no")
TEMPLATE = Template.parse("Patient: {age} year old {sex}. Answer:")
# Planted rule: old patients (67, 74) are referred with probability 0.9, young ones (24, 31)
# with 0.1; sex is ignored. Form k of "young" pairs with form k of "old" (equal token length).
AGE_FORMS = {"young": ("24", "31"), "old": ("67", "74")}
SEXES = ("male", "female")
UNITS = list(itertools.product(range(2), SEXES))  # (age form index, sex)


def render(age: str, form: int, sex: str):
    return TEMPLATE.render({"age": AGE_FORMS[age][form], "sex": sex})


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, bpe_tokenizer) -> ModelAdapter:
    """A two-layer GPT-2 trained (in about a second) to answer by age alone."""
    cases = [(age, form, sex) for age in AGE_FORMS for form, sex in UNITS]
    encoded = bpe_tokenizer([render(*case).text for case in cases], return_tensors="pt")
    target = torch.tensor([0.9 if age == "old" else 0.1 for age, _, _ in cases])
    yes, no = (bpe_tokenizer(answer, add_special_tokens=False)["input_ids"][0] for answer in (" yes", " no"))
    config = GPT2Config(
        vocab_size=len(bpe_tokenizer),
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=0.2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(60):
            log_probs = torch.log_softmax(model(**encoded).logits[:, -1, [yes, no]], dim=-1)
            loss = -(target * log_probs[:, 0] + (1 - target) * log_probs[:, 1]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    folder = tmp_path_factory.mktemp("planted")
    model.save_pretrained(folder)
    bpe_tokenizer.save_pretrained(folder)
    return ModelAdapter.load(ModelSpec(str(Path(folder)), device="cpu"))


def arms(treatment: str):
    """Each unit's texts under do(treatment = a) and do(treatment = b): (a, b, contrast)."""
    if treatment == "age":
        return (
            [render("old", k, sex) for k, sex in UNITS],
            [render("young", k, sex) for k, sex in UNITS],
            "old vs young",
        )
    return (
        [render("old", k, "female") for k, _ in UNITS],
        [render("old", k, "male") for k, _ in UNITS],
        "female vs male",
    )


def unit_effects(adapter, treatment):
    treated, control, _ = arms(treatment)
    return evaluate_outcomes(adapter, [t.text for t in treated], YES_NO) - evaluate_outcomes(
        adapter, [t.text for t in control], YES_NO
    )


def test_planted_factor_has_the_larger_effect_and_the_larger_saliency_mass(planted):
    age, sex = unit_effects(planted, "age"), unit_effects(planted, "sex")
    assert (age > 3).all() and np.abs(sex).max() < 0.1 * age.min()
    texts = [render("old" if k else "young", k, sex) for k, sex in UNITS]
    # Gradient x input is left out: it is local, and where the trained model saturates its
    # gradient on age is small, so the planted rule does not fix its order.
    evidence = integrated_gradients(planted, texts, ["age", "sex"], YES_NO, n_steps=64)
    mass = evidence.spans["value"].abs().groupby(evidence.spans["factor"]).mean()
    assert mass["age"] > 3 * mass["sex"]


@pytest.mark.parametrize("treatment", ["age", "sex"])
def test_counterfactual_baseline_attributions_sum_to_the_unit_effect(planted, treatment):
    treated, control, _ = arms(treatment)
    evidence = integrated_gradients(
        planted, treated, ["age", "sex"], YES_NO, baseline="counterfactual", counterfactuals=control, n_steps=64
    )
    effects = unit_effects(planted, treatment)
    spans = evidence.spans.pivot(index="unit", columns="factor", values="value")
    delta = evidence.completeness["delta"].to_numpy()
    # Tokens equal in both arms get nothing: the treatment's own span carries the whole sum.
    other = "sex" if treatment == "age" else "age"
    assert (spans[other] == 0).all()
    np.testing.assert_allclose(spans[treatment] - delta, effects, atol=1e-5)
    np.testing.assert_allclose(
        evidence.completeness["outcome"] - evidence.completeness["baseline_outcome"],
        effects,
        atol=1e-5,
    )
    assert (np.abs(delta) <= 0.01 * np.abs(effects).max()).all()


def test_linked_table_puts_the_planted_factor_first_and_saliency_agrees(planted):
    paired, evidence = [], []
    for treatment in ("age", "sex"):
        treated, control, contrast = arms(treatment)
        effects = unit_effects(planted, treatment)
        paired.append(
            estimate_paired_effects(
                pd.DataFrame({"difference": effects, "weight": 1 / len(effects)}),
                treatment=treatment,
                contrast=contrast,
                n_bootstrap=200,
            ).to_frame()
        )
        ig = integrated_gradients(
            planted, treated, ["age", "sex"], YES_NO, baseline="counterfactual", counterfactuals=control
        )
        evidence.append(ig.spans[ig.spans["factor"] == treatment])
    links = link_evidence(pd.concat(paired), pd.concat(evidence), n_bootstrap=200)
    table = links.to_frame()
    assert table["factor"].tolist() == ["age", "sex"]
    assert table.loc[0, "effect"] > 3
    assert links.flagged == ()
    (agreement,) = links.agreement
    assert agreement.estimate == 1.0


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("gpt2", YES_NO),
        ("gpt2", ContinuationLogProb(" yes please")),
        ("llama", YES_NO),
        ("classifier", ClassLogit("yes")),
    ],
)
def test_integrated_gradients_completeness_within_one_percent(request, name, outcome):
    adapter = request.getfixturevalue(name)
    texts = [
        render("old", 0, "male"),
        render("young", 1, "female"),
        TEMPLATE.render({"age": "67", "sex": "no public private"}),
    ]
    evidence = integrated_gradients(adapter, texts, ["age", "sex"], outcome, n_steps=128, batch_size=64)
    table = evidence.completeness
    expected = evaluate_outcomes(adapter, [t.text for t in texts], outcome)
    np.testing.assert_allclose(table["outcome"], expected, atol=1e-4)
    gap = table["outcome"] - table["baseline_outcome"]
    np.testing.assert_allclose(table["attribution_sum"], gap + table["delta"], atol=1e-5)
    assert (np.abs(table["delta"]) <= 0.01 * np.abs(gap)).all()


def test_gradient_x_input_is_the_outcome_gradient_times_the_embeddings(classifier):
    texts = [render("old", 0, "male"), render("young", 1, "female")]
    evidence = gradient_x_input(classifier, texts, ["age", "sex"], ClassLogit("yes"))
    reader = ClassLogit("yes")._bind(classifier)
    for unit, rendered in enumerate(texts):
        ids = classifier.tokenizer(rendered.text, return_tensors="pt")["input_ids"]
        embeds = classifier.model.get_input_embeddings()(ids).detach().requires_grad_()
        value = reader.read(classifier.model(inputs_embeds=embeds).logits, None)
        (gradient,) = torch.autograd.grad(value.sum(), embeds)
        per_token = (gradient * embeds).sum(-1)[0].detach().double().numpy()
        tokens = evidence.tokens[evidence.tokens["unit"] == unit]
        np.testing.assert_allclose(tokens["value"], per_token, atol=1e-6)
        ((start, end),) = rendered.token_spans(classifier.tokenizer)["age"]
        age = evidence.spans.query("unit == @unit and factor == 'age'")["value"].item()
        assert age == pytest.approx(per_token[start:end].sum(), abs=1e-6)
    assert evidence.completeness["delta"].isna().all()


def test_unequal_arm_lengths_raise_or_are_skipped_and_listed(gpt2):
    texts = [render("old", 0, "male"), render("old", 1, "male")]
    longer = [render("young", 0, "male"), TEMPLATE.render({"age": "31 and 24", "sex": "male"})]
    with pytest.raises(InterventionError, match=r"unit 8: its text has \d+ tokens but its count"):
        integrated_gradients(
            gpt2, texts, ["age"], YES_NO, baseline="counterfactual", counterfactuals=longer, units=[7, 8]
        )
    evidence = integrated_gradients(
        gpt2,
        texts,
        ["age"],
        YES_NO,
        baseline="counterfactual",
        counterfactuals=longer,
        units=[7, 8],
        on_length_mismatch="skip",
    )
    assert evidence.skipped_units == (8,)
    assert evidence.spans["unit"].tolist() == [7]


def test_bad_options_name_the_value(gpt2):
    texts = [render("old", 0, "male")]
    with pytest.raises(InterventionError, match="baseline 'zero' is not one of"):
        integrated_gradients(gpt2, texts, ["age"], YES_NO, baseline="zero")
    with pytest.raises(InterventionError, match="counterfactuals are given exactly for baseline"):
        integrated_gradients(gpt2, texts, ["age"], YES_NO, baseline="counterfactual")
    with pytest.raises(InterventionError, match="n_steps must be an int >= 1, got 0"):
        integrated_gradients(gpt2, texts, ["age"], YES_NO, n_steps=0)
    with pytest.raises(InterventionError, match="ClassLogit needs a sequence-classifier"):
        gradient_x_input(gpt2, texts, ["age"], ClassLogit("yes"))
