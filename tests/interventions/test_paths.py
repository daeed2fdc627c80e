"""Path patching against a plain hooked-forward loop and the identities that define it."""

import numpy as np
import pytest
import torch

from interventions import (
    ClassLogit,
    InterventionError,
    LogitDiff,
    Site,
    architecture_of,
    model_receivers,
    model_sites,
    patch_effects,
    path_patch,
)
from interventions._paths import parse_receiver

STREAM_MODELS = ["gpt2", "llama", "qwen2", "mistral", "neox", "gpt2_classifier"]
EVERYTHING = "head_q.*.*+head_k.*.*+head_v.*.*+mlp_in.*+resid_post.last"


def outcome_for(adapter):
    return LogitDiff(" yes", " no") if adapter.spec.task == "causal-lm" else ClassLogit("yes")


@pytest.mark.parametrize("model", STREAM_MODELS)
def test_path_patching_equals_the_plain_hooked_loop(model, request, patch_case, plain_path):
    adapter = request.getfixturevalue(model)
    outcome, pairs = outcome_for(adapter), patch_case.pairs(adapter)
    senders = [Site("head", 0, 1), Site("attn_out", 0), Site("mlp_out", 0), Site("resid_pre", 1)]
    receivers = ["head_q.1.0", "head_k.1.*", "head_v.1.0", "mlp_in.0", "mlp_in.1", "resid_post.last", EVERYTHING]
    positions = ["factor", "all", "last"]
    result = path_patch(adapter, outcome, pairs, senders, receivers, positions)
    expected = [
        plain_path(adapter, outcome, pair, sender, receiver, position)
        for pair in pairs
        for sender in senders
        for receiver in receivers
        for position in positions
    ]
    np.testing.assert_allclose(result.patched["outcome"], expected, atol=1e-5, rtol=0)
    change = result.patched["outcome"] - result.destination[result.patched["unit"]]
    acting = change.groupby(result.patched["receiver"]).agg(lambda values: np.abs(values).max()) > 1e-3
    if architecture_of(adapter.model).residual == "parallel":
        acting = acting.drop("mlp_in.0")  # a parallel block's MLP reads its input, before any sender here
    # Mistral's 5-token windows keep the changed tokens out of the last position's reach.
    assert acting.all() if model != "mistral" else acting.any()
    frame = result.patched
    assert list(frame.columns) == ["unit", "site", "component", "layer", "head", "position", "receiver", "outcome"]
    assert frame[["site", "receiver", "position"]].iloc[len(positions) + 1].tolist() == [
        "head.0.1",
        "head_k.1.*",
        "all",
    ]


@pytest.mark.parametrize("model", STREAM_MODELS)
def test_a_sender_patched_into_every_receiver_downstream_equals_patching_it_alone(model, request, patch_case):
    adapter = request.getfixturevalue(model)
    outcome, pairs = outcome_for(adapter), patch_case.pairs(adapter)
    senders = model_sites(adapter, ["resid_pre", "head", "attn_out", "mlp_out"])
    positions = ["factor", "all", "last", "factor:age"]
    paths = path_patch(adapter, outcome, pairs, senders, [EVERYTHING, "+".join(model_receivers(adapter))], positions)
    alone = patch_effects(adapter, outcome, pairs, senders, positions)
    for _, rows in paths.patched.groupby("receiver", sort=False):
        np.testing.assert_allclose(rows["outcome"], alone.patched["outcome"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(paths.destination, alone.destination, atol=1e-6, rtol=0)
    assert np.ptp(alone.patched["outcome"]) > 1e-2


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_a_sender_patched_into_no_receiver_changes_nothing(model, request, patch_case):
    adapter = request.getfixturevalue(model)
    outcome, pairs = outcome_for(adapter), patch_case.pairs(adapter)
    # Layer 1 writes after layer 1's attention reads and after layer 0 has run.
    senders = [Site("head", 1, 0), Site("attn_out", 1), Site("mlp_out", 1)]
    receivers = ["head_q.1.*+head_k.1.*+head_v.1.*", "mlp_in.0", "head_v.0.0"]
    result = path_patch(adapter, outcome, pairs, senders, receivers, ["all", "last"])
    np.testing.assert_array_equal(result.patched["outcome"], result.destination[result.patched["unit"]])
    assert result.work["paths_unreachable"] == len(result.patched)
    assert result.work.get("batches", 0) == 0
    reached = path_patch(adapter, outcome, pairs, senders[:1], ["resid_post.last"], ["last"])
    assert np.abs(reached.patched["outcome"] - reached.destination).max() > 1e-3


def test_receiver_names_expand_wildcards_and_join_sets(qwen2):
    architecture = architecture_of(qwen2.model)
    intakes = parse_receiver("head_k.1.*+mlp_in.0+head_q.*.3+resid_post.last", architecture)
    assert [(intake.kind, intake.layer, intake.head) for intake in intakes] == [
        ("k", 1, 0),
        ("k", 1, 1),
        ("mlp", 0, -1),
        ("q", 0, 3),
        ("q", 1, 3),
        ("final", 2, -1),
    ]
    names = model_receivers(qwen2, layers=[1])
    assert names == (
        *[f"head_q.1.{head}" for head in range(4)],
        "head_k.1.0",
        "head_k.1.1",
        "head_v.1.0",
        "head_v.1.1",
        "mlp_in.1",
        "resid_post.last",
    )


def test_bad_requests_are_rejected(gpt2, classifier, patch_case):
    pairs, outcome = patch_case.pairs(gpt2), LogitDiff(" yes", " no")
    sender = [Site("head", 0, 0)]
    with pytest.raises(InterventionError, match=r"receiver 'head.1.0:q' \(in 'head.1.0:q'\) is not a receiver name"):
        path_patch(gpt2, outcome, pairs, sender, ["head.1.0:q"], ["last"])
    with pytest.raises(InterventionError, match=r"receiver 'head_k.1.2': head 2 is out of range; there are 2"):
        path_patch(gpt2, outcome, pairs, sender, ["head_k.1.2"], ["last"])
    with pytest.raises(InterventionError, match=r"sender 'head_q.0.0' does not write into the residual stream"):
        path_patch(gpt2, outcome, pairs, [Site("head_q", 0, 0)], ["mlp_in.1"], ["last"])
    with pytest.raises(InterventionError, match=r"receivers must be distinct; repeated: \['mlp_in.1'\]"):
        path_patch(gpt2, outcome, pairs, sender, ["mlp_in.1", "mlp_in.1"], ["last"])
    with pytest.raises(InterventionError, match=r"this bert model normalises it after every block \(post-norm\)"):
        path_patch(classifier, ClassLogit("yes"), patch_case.pairs(classifier), sender, ["mlp_in.1"], ["last"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_path_patching_and_edge_attribution_on_cuda_equal_cpu(llama_folder, patch_case):
    from interventions import ModelAdapter, ModelSpec, edge_attribution_effects

    runs = {}
    for device in ("cuda", "cpu"):
        adapter = ModelAdapter.load(ModelSpec(str(llama_folder), device=device, dtype="float32"))
        arguments = (adapter, LogitDiff(" yes", " no"), patch_case.pairs(adapter), model_sites(adapter, ["head"]))
        runs[device] = (
            path_patch(*arguments, [EVERYTHING, "head_v.1.*"], ["factor", "all"]).patched["outcome"],
            edge_attribution_effects(*arguments, [EVERYTHING, "head_v.1.*"], ["factor", "all"])["estimate"],
        )
    for on_cuda, on_cpu in zip(runs["cuda"], runs["cpu"]):
        np.testing.assert_allclose(on_cuda, on_cpu, atol=1e-4)
