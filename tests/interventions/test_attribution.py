"""Attribution patching against its definition (a directional derivative) and exact patching."""

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
    architecture_of,
    attribution_effects,
    model_sites,
    patch_effects,
)
from interventions._evaluate import _bind_outcome
from interventions._hooks import site_hooks

POSITIONS = ["last", "factor", "all"]


def in_float64(adapter) -> ModelAdapter:
    """The same weights in double precision, so finite differences are accurate."""
    model = type(adapter.model)(adapter.model.config)
    model.load_state_dict(adapter.model.state_dict())
    return dataclasses.replace(adapter, model=model.double().eval(), dtype=torch.float64)


def directional_derivative(adapter, outcome, pair, site, position, step=1e-2) -> float:
    """d/de outcome(destination with site <- destination + e (source - destination)) at e = 0.

    Richardson-extrapolated central differences: the error is O(step^4), so a step large
    enough to rise above rounding noise stays accurate.
    """
    architecture = architecture_of(adapter.model)
    reader = _bind_outcome(adapter, outcome)
    d_head = architecture.d_head
    width = slice(None)
    if site.component == "head_pattern":
        width = site.head  # (query, head, key) rows; arms of equal length lay keys in place
    elif site.head is not None:
        width = slice(site.head * d_head, (site.head + 1) * d_head)

    def run(text, edit):
        ids = adapter.tokenizer(text)["input_ids"] + list(reader.suffix)
        with torch.inference_mode(), site_hooks(adapter.model, architecture, {site.point: edit}):
            logits = adapter.model(input_ids=torch.tensor([ids])).logits
            return reader.read(logits.double(), torch.tensor([len(ids) - 1])).item()

    captured = {}

    def keep(name):
        def edit(activation):
            captured[name] = activation[0].clone()

        return edit

    run(pair.source.text, keep("source"))
    run(pair.destination.text, keep("destination"))

    def moved(epsilon):
        def edit(activation):
            activation = activation.clone()
            for d, s in pair.positions[position]:
                change = captured["source"][s, width] - captured["destination"][d, width]
                activation[0, d, width] += epsilon * change
            return activation

        return run(pair.destination.text, edit)

    def central(h):
        return (moved(h) - moved(-h)) / (2 * h)

    return (4 * central(step / 2) - central(step)) / 3


# Llama's RMSNorm computes in float32 whatever the model dtype, which limits the differences.
@pytest.mark.parametrize("model, tolerance", [("gpt2", 1e-6), ("llama", 2e-4), ("neox", 1e-6), ("classifier", 1e-6)])
def test_estimates_are_the_directional_derivative_of_the_patch(model, tolerance, request, patch_case):
    adapter = in_float64(request.getfixturevalue(model))
    outcome = LogitDiff(" yes", " no") if adapter.spec.task == "causal-lm" else ClassLogit("yes")
    pairs = patch_case.pairs(adapter)
    sites = [Site("resid_pre", 0), Site("attn_out", 1), Site("mlp_out", 0), Site("head", 1, 1), Site("resid_post", 1)]
    estimates = attribution_effects(adapter, outcome, pairs, sites, POSITIONS)
    assert list(estimates.columns) == ["unit", "site", "component", "layer", "head", "position", "estimate"]
    expected = [
        directional_derivative(adapter, outcome, pairs[unit], site, position)
        for unit in range(len(pairs))
        for site in sites
        for position in POSITIONS
    ]
    np.testing.assert_allclose(estimates["estimate"], expected, rtol=0, atol=tolerance)
    assert np.abs(expected).max() > 1e-2


@pytest.mark.parametrize("model, tolerance", [("gpt2", 1e-6), ("llama", 2e-4), ("neox", 1e-6), ("classifier", 1e-6)])
def test_estimates_inside_attention_are_the_directional_derivative_of_the_patch(model, tolerance, request, patch_case):
    adapter = in_float64(request.getfixturevalue(model))
    outcome = LogitDiff(" yes", " no") if adapter.spec.task == "causal-lm" else ClassLogit("yes")
    pairs = patch_case.pairs(adapter, patch_case.units[1:])  # equal lengths: attention rows move in place
    sites = [Site.parse(name) for name in ["resid_mid.0", "head_q.1.1", "head_k.0.0", "head_v.1.0", "head_pattern.0.1"]]
    estimates = attribution_effects(adapter, outcome, pairs, sites, POSITIONS)
    expected = [
        directional_derivative(adapter, outcome, pairs[0], site, position) for site in sites for position in POSITIONS
    ]
    np.testing.assert_allclose(estimates["estimate"], expected, rtol=0, atol=tolerance)
    assert (estimates.groupby("component")["estimate"].agg(lambda values: np.abs(values).max()) > 1e-3).all()


def test_unchanged_activations_get_zero_estimates(gpt2, patch_case):
    pairs = patch_case.pairs(gpt2)
    age = attribution_effects(
        gpt2, LogitDiff(" yes", " no"), pairs[:1], model_sites(gpt2, ["resid_pre", "attn_out"]), ["factor:age"]
    )
    assert (age["estimate"] == 0).all()  # unit 0 keeps its age, before the first change


def test_estimates_rank_exact_effects_in_a_near_linear_model(tmp_path, gpt2, patch_case):
    """A planted regime: small weights keep the model near linear, so AtP ranks the sweep."""
    config = GPT2Config(
        vocab_size=len(gpt2.tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2, initializer_range=0.02
    )
    with torch.random.fork_rng():
        torch.manual_seed(1)
        GPT2LMHeadModel(config).save_pretrained(tmp_path)
    gpt2.tokenizer.save_pretrained(tmp_path)
    adapter = ModelAdapter.load(ModelSpec(str(tmp_path), device="cpu"))
    outcome, pairs = LogitDiff(" yes", " no"), patch_case.pairs(adapter)
    sites = model_sites(adapter, ["resid_pre", "attn_out", "mlp_out", "head"])
    estimates = attribution_effects(adapter, outcome, pairs, sites, POSITIONS)
    exact = patch_effects(adapter, outcome, pairs, sites, POSITIONS)
    change = exact.patched["outcome"] - exact.destination[exact.patched["unit"]]
    assert stats.spearmanr(estimates["estimate"], change).statistic > 0.9


def test_bad_requests_are_rejected(gpt2, patch_case):
    with pytest.raises(InterventionError, match=r"position 'middle' is not aligned"):
        attribution_effects(gpt2, LogitDiff(" yes", " no"), patch_case.pairs(gpt2), [Site("resid_pre", 0)], ["middle"])
    with pytest.raises(InterventionError, match="must be sequences"):
        attribution_effects(gpt2, LogitDiff(" yes", " no"), patch_case.pairs(gpt2), Site("resid_pre", 0), ["last"])
