"""Edge attribution against its definition (a derivative of path patching) and a planted circuit."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats
from transformers import GPT2Config, GPT2LMHeadModel

from interventions import (
    ClassLogit,
    InterventionError,
    LogitDiff,
    ModelAdapter,
    ModelSpec,
    Site,
    Template,
    align,
    edge_attribution_effects,
    model_receivers,
    model_sites,
    path_patch,
    screen_edges,
)


def in_float64(adapter) -> ModelAdapter:
    """The same weights in double precision, so finite differences are accurate."""
    model = type(adapter.model)(adapter.model.config)
    model.load_state_dict(adapter.model.state_dict())
    return dataclasses.replace(adapter, model=model.double().eval(), dtype=torch.float64)


@pytest.mark.parametrize(
    "model, tolerance", [("gpt2", 1e-6), ("llama", 2e-4), ("neox", 1e-6), ("gpt2_classifier", 1e-6)]
)
def test_estimates_are_the_derivative_of_path_patching_along_the_senders_change(
    model, tolerance, request, patch_case, plain_path
):
    adapter = in_float64(request.getfixturevalue(model))
    outcome = LogitDiff(" yes", " no") if adapter.spec.task == "causal-lm" else ClassLogit("yes")
    pairs = patch_case.pairs(adapter)
    senders = [Site("head", 0, 1), Site("mlp_out", 0), Site("resid_pre", 1)]
    receivers = ["head_q.1.0", "head_k.1.0+head_v.1.*", "mlp_in.0", "mlp_in.1", "resid_post.last"]
    positions = ["factor", "all"]
    estimates = edge_attribution_effects(adapter, outcome, pairs, senders, receivers, positions)
    assert list(estimates.columns) == ["unit", "site", "component", "layer", "head", "position", "receiver", "estimate"]

    def derivative(pair, sender, receiver, position, step=1e-2):
        def central(h):
            low, high = (plain_path(adapter, outcome, pair, sender, receiver, position, scale=s) for s in (-h, h))
            return (high - low) / (2 * h)

        return (4 * central(step / 2) - central(step)) / 3

    expected = [
        derivative(pair, sender, receiver, position)
        for pair in pairs
        for sender in senders
        for receiver in receivers
        for position in positions
    ]
    np.testing.assert_allclose(estimates["estimate"], expected, rtol=0, atol=tolerance)
    assert np.abs(expected).max() > 1e-2


def planted(folder, tokenizer) -> ModelAdapter:
    """A GPT-2 wired by hand: head 0.0 copies the insurance token's value to every later position,
    head 1.0 averages it (uniform attention) into a decision direction that " yes" - " no" reads.

    Every residual vector is a sum of (+a, -a) feature pairs, so LayerNorm only rescales it.
    Head 0.0's query is a constant and its key reads a marker both insurance tokens carry, so
    later positions attend to the insurance token; its value reads the token's sign. Other
    heads, the MLPs and position embeddings are zero.
    """
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=2, n_head=2, tie_word_embeddings=False
    )
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for norm in (*[block.ln_1 for block in model.transformer.h], *[block.ln_2 for block in model.transformer.h]):
            norm.weight.fill_(1)
        model.transformer.ln_f.weight.fill_(1)
        embedding = model.transformer.wte.weight
        embedding[:, 0], embedding[:, 1] = 4, -4  # a constant pair keeps every norm near one scale
        for word, sign in ((" private", 1), (" public", -1)):
            token = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))[0]
            embedding[token, 2:4] = torch.tensor([4.0, -4.0])  # insurance marker
            embedding[token, 4:6] = torch.tensor([4.0 * sign, -4.0 * sign])  # which insurance
        first, second = (block.attn for block in model.transformer.h)
        width = config.n_embd
        first.c_attn.bias[0] = 1  # head 0.0: constant query
        first.c_attn.weight[2, width] = 20  # ... key reads the marker
        first.c_attn.weight[4, 2 * width] = 1  # ... value reads the sign
        first.c_proj.weight[0, 6:8] = torch.tensor([2.0, -2.0])  # ... written to features 6, 7
        second.c_attn.weight[6, 2 * width] = 1  # head 1.0 (zero query: uniform) reads feature 6
        second.c_proj.weight[0, 8:10] = torch.tensor([2.0, -2.0])  # ... into the decision features
        for word, sign in ((" yes", 1), (" no", -1)):
            token = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))[0]
            model.lm_head.weight[token, 8] = sign
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return ModelAdapter.load(ModelSpec(str(folder), device="cpu"))


def test_a_planted_circuit_is_found_by_path_patching_and_edge_attribution(tmp_path, bpe_tokenizer):
    adapter = planted(tmp_path, bpe_tokenizer)
    template = Template.parse("Patient: {age} year old {sex} with {insurance} insurance. Refer for CT? Answer:")
    pairs = [
        align(
            template.render({"age": age, "sex": sex, "insurance": "public"}),
            template.render({"age": age, "sex": sex, "insurance": "private"}),
            template,
            adapter.tokenizer,
            treatment="insurance",
        )
        for age in ["24", "67"]
        # More tokens before the insurance leave fewer after it for head 1.0 to average.
        for sex in ["male", "female", "retired male", "retired and widowed female"]
    ]
    outcome = LogitDiff(" yes", " no")
    senders = model_sites(adapter, ["head", "mlp_out"], layers=[0])
    receivers = model_receivers(adapter)
    exact = path_patch(adapter, outcome, pairs, senders, receivers, ["all"])
    effects = exact.patched.assign(effect=exact.patched["outcome"] - exact.destination[exact.patched["unit"]])
    by_edge = effects.groupby(["site", "receiver"])["effect"].mean().abs().sort_values(ascending=False)
    assert by_edge.index[0] == ("head.0.0", "head_v.1.0")
    assert by_edge.iloc[1] < 1e-3 * by_edge.iloc[0]  # nothing else carries it
    planted_edge = effects[(effects["site"] == "head.0.0") & (effects["receiver"] == "head_v.1.0")]["effect"]
    total = exact.source - exact.destination
    np.testing.assert_allclose(planted_edge, total, rtol=1e-4)  # the whole effect runs along it
    low, high = stats.t.interval(0.95, len(planted_edge) - 1, planted_edge.mean(), stats.sem(planted_edge))
    assert low > 0.5  # the interval across units excludes zero by far

    screen = screen_edges(adapter, outcome, pairs, senders, receivers, ["all"], top=5)
    top = screen.edges.head(5)
    assert ("head.0.0", "all", "head_v.1.0") in set(top[["site", "position", "receiver"]].itertuples(index=False))
    assert screen.edges.iloc[0][["site", "receiver"]].tolist() == ["head.0.0", "head_v.1.0"]
    assert screen.edges["effect"].notna().sum() == 5
    assert "top 5 path patched exactly" in screen.summary()


def test_screening_agrees_with_exact_path_patching_in_a_near_linear_model(tmp_path, gpt2, patch_case):
    """Small weights keep the model near linear, so first-order estimates rank the exact effects."""
    config = GPT2Config(
        vocab_size=len(gpt2.tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2, initializer_range=0.02
    )
    with torch.random.fork_rng():
        torch.manual_seed(1)
        GPT2LMHeadModel(config).save_pretrained(tmp_path)
    gpt2.tokenizer.save_pretrained(tmp_path)
    adapter = ModelAdapter.load(ModelSpec(str(tmp_path), device="cpu"))
    senders = model_sites(adapter, ["head", "mlp_out"], layers=[0])
    screen = screen_edges(
        adapter, LogitDiff(" yes", " no"), patch_case.pairs(adapter), senders, model_receivers(adapter), ["all"], top=12
    )
    assert screen.spearman > 0.9
    assert len(screen.exact.patched) == 12 * len(patch_case.units)


def test_bad_requests_are_rejected(gpt2, patch_case):
    pairs = patch_case.pairs(gpt2)
    with pytest.raises(InterventionError, match="top must be an int >= 1, got 0"):
        screen_edges(gpt2, LogitDiff(" yes", " no"), pairs, [Site("head", 0, 0)], ["mlp_in.1"], ["all"], top=0)
    with pytest.raises(InterventionError, match=r"receivers must be a sequence of names, got the string 'mlp_in.1'"):
        edge_attribution_effects(gpt2, LogitDiff(" yes", " no"), pairs, [Site("head", 0, 0)], "mlp_in.1", ["all"])
