"""Attention from the decision position to factor spans, and attention rollout."""

import numpy as np
import pytest
import torch

from interventions import InterventionError, Template
from interventions._attention import attention_evidence, attention_rollout, eager_attention

TEMPLATE = Template.parse("Patient: {age} year old {sex} with {insurance} insurance. Answer:")
TEXTS = [
    TEMPLATE.render({"age": "24", "sex": "male", "insurance": "private"}),
    TEMPLATE.render({"age": "67", "sex": "female", "insurance": "no"}),
    TEMPLATE.render({"age": "31", "sex": "female", "insurance": "public private public"}),
]
FACTORS = ["age", "insurance"]


def manual_attention(adapter, rendered, decision):
    """Per layer and head, attention from `decision` to every token: one unpadded forward."""
    ids = adapter.tokenizer(rendered.text, return_tensors="pt")["input_ids"]
    with eager_attention(adapter.model), torch.inference_mode():
        attentions = adapter.model(input_ids=ids, output_attentions=True).attentions
    position = ids.shape[1] - 1 if decision == "last" else 0
    return torch.stack(attentions)[:, 0, :, position, :].double().numpy()  # layer, head, key


@pytest.mark.parametrize(
    ("name", "decision"),
    [("gpt2", "last"), ("llama", "last"), ("classifier", "first"), ("gpt2_classifier", "last")],
)
def test_head_span_sums_equal_manual_sums_over_span_tokens(request, name, decision):
    adapter = request.getfixturevalue(name)
    evidence = attention_evidence(adapter, TEXTS, FACTORS, units=[10, 11, 12], batch_size=2)
    per_head = evidence.spans[evidence.spans["layer"].notna()]
    for unit, rendered in zip([10, 11, 12], TEXTS):
        weights = manual_attention(adapter, rendered, decision)
        spans = rendered.token_spans(adapter.tokenizer)
        for factor in FACTORS:
            tokens = [i for start, end in spans[factor] for i in range(start, end)]
            expected = weights[:, :, tokens].sum(axis=-1)
            rows = per_head[(per_head["unit"] == unit) & (per_head["factor"] == factor)]
            found = np.zeros_like(expected)
            found[rows["layer"].to_numpy(int), rows["head"].to_numpy(int)] = rows["value"]
            np.testing.assert_allclose(found, expected, atol=1e-6)
            mean = evidence.spans.query(
                "unit == @unit and factor == @factor and method == 'attention' and layer.isna()"
            )["value"]
            assert mean.item() == pytest.approx(expected.mean(), abs=1e-6)


def test_rollout_and_mean_attention_rows_sum_to_one_over_tokens(gpt2, classifier):
    for adapter in (gpt2, classifier):
        tokens = attention_evidence(adapter, TEXTS, FACTORS).tokens
        totals = tokens.groupby(["unit", "method"])["value"].sum()
        np.testing.assert_allclose(totals.to_numpy(), 1.0, atol=1e-9)
        assert set(tokens["method"]) == {"attention", "attention_rollout"}


def test_rollout_mixes_head_means_with_identity_and_multiplies_later_layers_on_the_left():
    generator = torch.Generator().manual_seed(0)
    first, second = (torch.softmax(torch.randn(1, 3, 4, 4, generator=generator), -1) for _ in range(2))
    mixed = [0.5 * layer[0].double().mean(dim=0) + 0.5 * torch.eye(4, dtype=torch.float64) for layer in (first, second)]
    torch.testing.assert_close(attention_rollout([first])[0], mixed[0])
    torch.testing.assert_close(attention_rollout([first, second])[0], mixed[1] @ mixed[0])


def test_sdpa_model_switches_to_eager_and_back_and_says_so(gpt2):
    assert gpt2.model.config._attn_implementation == "sdpa"
    evidence = attention_evidence(gpt2, TEXTS[:1], FACTORS)
    assert (evidence.attn_implementation, evidence.switched_to_eager) == ("sdpa", True)
    assert gpt2.model.config._attn_implementation == "sdpa"
    assert "ran with eager attention (the model is configured with 'sdpa')" in evidence.summary()
    with eager_attention(gpt2.model):
        inner = attention_evidence(gpt2, TEXTS[:1], FACTORS)
    assert (inner.attn_implementation, inner.switched_to_eager) == ("eager", False)
    np.testing.assert_allclose(inner.spans["value"], evidence.spans["value"])


def test_frame_has_one_row_per_unit_factor_and_reading(llama):
    spans = attention_evidence(llama, TEXTS, FACTORS).spans
    n_readings = 2 * 2 + 2  # layers x heads, their mean, the rollout
    assert len(spans) == len(TEXTS) * len(FACTORS) * n_readings
    assert list(spans.columns) == ["unit", "factor", "method", "baseline", "layer", "head", "value"]
    assert str(spans["layer"].dtype) == "Int64"
    assert spans.loc[spans["method"] == "attention_rollout", "layer"].isna().all()


def test_factor_without_slot_names_the_factor(gpt2):
    with pytest.raises(InterventionError, match=r"factor 'weekday' has no slot in text 0"):
        attention_evidence(gpt2, TEXTS, ["age", "weekday"])
