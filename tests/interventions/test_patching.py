"""Exact patching against identities and a plain one-patch-per-forward hook loop."""

import numpy as np
import pytest
import torch

from interventions import (
    ClassLogit,
    ContinuationLogProb,
    InterventionError,
    LogitDiff,
    Site,
    align,
    architecture_of,
    evaluate_outcomes,
    model_sites,
    patch_effects,
)
from interventions._evaluate import _bind_outcome
from interventions._hooks import site_hooks

CAUSAL = ["gpt2", "llama", "neox", "qwen2", "mistral"]
CLASSIFIERS = ["classifier", "gpt2_classifier", "roberta", "distilbert"]
POSITIONS = ["last", "factor", "all", "factor:age"]
COMPONENTS = ["resid_pre", "resid_post", "attn_out", "mlp_out", "head"]
NEW_COMPONENTS = ["resid_mid", "head_q", "head_k", "head_v", "head_pattern"]


def outcome_for(adapter):
    return LogitDiff(" yes", " no") if adapter.spec.task == "causal-lm" else ClassLogit("yes")


def plain_loop(adapter, outcome, pairs, sites, positions) -> np.ndarray:
    """The reference: one full forward per (unit, site, position), the patch written by a hook."""
    architecture = architecture_of(adapter.model)
    reader = _bind_outcome(adapter, outcome)
    d_head = architecture.d_head

    def run(ids, edits):
        with torch.inference_mode(), site_hooks(adapter.model, architecture, edits):
            logits = adapter.model(input_ids=torch.tensor([ids])).logits
            return reader.read(logits.float(), torch.tensor([len(ids) - 1])).item()

    values = []
    for pair in pairs:
        destination, source = (
            adapter.tokenizer(text)["input_ids"] + list(reader.suffix)
            for text in (pair.destination.text, pair.source.text)
        )
        for site in sites:
            captured = []
            run(source, {site.point: lambda act, into=captured: into.append(act[0].clone())})
            if site.component == "head_pattern":
                moved = moved_rows(captured[0][:, site.head], pair, len(destination), len(source), len(reader.suffix))
                width, captured[0] = site.head, moved
            else:
                width = slice(None) if site.head is None else slice(site.head * d_head, (site.head + 1) * d_head)
            for position in positions:

                def patch(activation, pairs=pair.positions[position], width=width, source=captured[0]):
                    activation = activation.clone()
                    for d, s in pairs:
                        activation[0, d, width] = source[s] if isinstance(width, int) else source[s, width]
                    return activation

                values.append(run(destination, {site.point: patch}))
    return np.array(values)


def moved_rows(rows, pair, dest_length, source_length, suffix):
    """Source attention rows (queries, source keys) laid over the destination's keys.

    An aligned key keeps its mass at its partner; an unaligned one gives it to the first
    aligned key after it (or the last aligned key when none follows).
    """
    aligned = {s: d for d, s in reversed(pair.positions["all"])}
    aligned.update({source_length - suffix + k: dest_length - suffix + k for k in range(suffix)})
    moved = rows.new_zeros((rows.shape[0], dest_length))
    for key in range(source_length):
        later = [other for other in aligned if other >= key]
        moved[:, aligned[min(later) if later else max(aligned)]] += rows[:, key]
    return moved


@pytest.mark.parametrize("model", CAUSAL + CLASSIFIERS)
def test_engine_equals_the_plain_hook_loop_at_every_site_and_position(model, request, patch_case):
    adapter = request.getfixturevalue(model)
    outcome, pairs = outcome_for(adapter), patch_case.pairs(adapter)
    sites = model_sites(adapter, COMPONENTS)
    result = patch_effects(adapter, outcome, pairs, sites, POSITIONS)
    expected = plain_loop(adapter, outcome, pairs, sites, POSITIONS)
    np.testing.assert_allclose(result.patched["outcome"], expected, atol=1e-5, rtol=0)
    assert np.ptp(expected) > 1e-2  # the patches do change the outcome
    frame = result.patched
    assert list(frame.columns) == ["unit", "site", "component", "layer", "head", "position", "outcome"]
    assert len(frame) == len(pairs) * len(sites) * len(POSITIONS)
    assert frame[["unit", "site", "position"]].iloc[len(POSITIONS) + 1].tolist() == [0, sites[1].name, POSITIONS[1]]
    assert str(frame["head"].dtype) == "Int64"
    assert frame.loc[frame["component"] == "head", "head"].notna().all()
    assert frame.loc[frame["component"] != "head", "head"].isna().all()


@pytest.mark.parametrize("model", CAUSAL + CLASSIFIERS)
def test_engine_equals_the_plain_hook_loop_at_the_middle_stream_and_inside_attention(model, request, patch_case):
    adapter = request.getfixturevalue(model)
    outcome, pairs = outcome_for(adapter), patch_case.pairs(adapter)
    sites = model_sites(adapter, NEW_COMPONENTS)
    result = patch_effects(adapter, outcome, pairs, sites, POSITIONS)
    expected = plain_loop(adapter, outcome, pairs, sites, POSITIONS)
    np.testing.assert_allclose(result.patched["outcome"], expected, atol=1e-5, rtol=0)
    change = result.patched.assign(change=expected - result.destination[result.patched["unit"]])
    acting = change.groupby("component")["change"].agg(np.ptp) > 1e-3
    # Mistral's 5-token windows keep every changed token out of the last query's reach, so
    # its queries do not move the outcome; every other kind of patch acts everywhere.
    assert acting.drop("head_q" if model == "mistral" else []).all()
    architecture = architecture_of(adapter.model)
    heads = change.groupby("component")["head"].max()
    assert heads["head_k"] == heads["head_v"] == architecture.n_kv_heads - 1
    assert heads["head_q"] == heads["head_pattern"] == architecture.n_heads - 1


@pytest.mark.parametrize(
    "batch_size, outcome",
    [
        (1, LogitDiff(" yes", " no")),
        (3, ContinuationLogProb(" yes no")),
        (None, ContinuationLogProb(" no")),
    ],
)
def test_batch_size_and_multi_token_outcomes_change_nothing(gpt2, batch_size, outcome, patch_case):
    pairs = patch_case.pairs(gpt2)
    sites = model_sites(gpt2, ["resid_pre", "attn_out", "head"])
    result = patch_effects(gpt2, outcome, pairs, sites, POSITIONS, batch_size=batch_size)
    expected = plain_loop(gpt2, outcome, pairs, sites, POSITIONS)
    np.testing.assert_allclose(result.patched["outcome"], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model", CAUSAL + CLASSIFIERS)
def test_patching_every_position_of_resid_pre_0_gives_the_source_outcome(model, request, patch_case):
    adapter = request.getfixturevalue(model)
    pairs = patch_case.pairs(adapter, patch_case.units[1:])  # texts of equal token length
    assert len(pairs[0].positions["all"]) == len(adapter.tokenizer(pairs[0].destination.text)["input_ids"])
    result = patch_effects(adapter, outcome_for(adapter), pairs, [Site("resid_pre", 0)], ["all"])
    np.testing.assert_allclose(result.patched["outcome"], result.source, atol=1e-5, rtol=0)
    assert abs(result.source[0] - result.destination[0]) > 1e-3


@pytest.mark.parametrize("model", CAUSAL)
def test_patching_the_last_residual_at_the_last_token_gives_the_source_outcome(model, request, patch_case):
    adapter = request.getfixturevalue(model)
    pairs = patch_case.pairs(adapter)  # unequal lengths too: only the read position matters
    last = Site("resid_post", architecture_of(adapter.model).n_layers - 1)
    result = patch_effects(adapter, outcome_for(adapter), pairs, [last], ["last"])
    np.testing.assert_allclose(result.patched["outcome"], result.source, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model", ["gpt2", "llama", "classifier"])
def test_unpatched_runs_match_evaluate_outcomes_and_equal_texts_change_nothing(model, request, patch_case):
    adapter = request.getfixturevalue(model)
    outcome = outcome_for(adapter)
    same = [(dest, dest) for dest, _ in patch_case.units]
    pairs = patch_case.pairs(adapter) + patch_case.pairs(adapter, same)
    sites = model_sites(adapter, COMPONENTS)
    result = patch_effects(adapter, outcome, pairs, sites, POSITIONS)
    destination = evaluate_outcomes(adapter, [pair.destination.text for pair in pairs], outcome)
    source = evaluate_outcomes(adapter, [pair.source.text for pair in pairs], outcome)
    np.testing.assert_allclose(result.destination, destination, atol=1e-5, rtol=0)
    np.testing.assert_allclose(result.source, source, atol=1e-5, rtol=0)
    unchanged = result.patched[result.patched["unit"] >= len(patch_case.units)]
    expected = result.destination[unchanged["unit"]]
    np.testing.assert_allclose(unchanged["outcome"], expected, atol=1e-5, rtol=0)
    if adapter.spec.task == "causal-lm":
        assert result.work["patches_skipped_identical"] >= len(unchanged)


def test_small_memory_budgets_split_units_and_stacks_without_changing_results(gpt2, monkeypatch, patch_case):
    pairs, outcome = patch_case.pairs(gpt2), outcome_for(gpt2)
    sites = model_sites(gpt2, COMPONENTS)
    whole = patch_effects(gpt2, outcome, pairs, sites, POSITIONS)
    monkeypatch.setattr("interventions._sweep._CPU_BYTES", 1)  # one unit per chunk
    monkeypatch.setattr("interventions._sweep._CPU_TOKENS", 24)  # about one row per stack
    split = patch_effects(gpt2, outcome, pairs, sites, POSITIONS)
    np.testing.assert_allclose(split.patched["outcome"], whole.patched["outcome"], atol=1e-6)
    np.testing.assert_array_equal(split.destination, whole.destination)
    assert split.work["batches"] > 2 * whole.work["batches"]
    assert split.work["patches"] == whole.work["patches"]


def test_work_counts_skips_and_progress(gpt2, patch_case):
    pairs = patch_case.pairs(gpt2)
    sites = model_sites(gpt2, ["resid_pre"])
    reported = []
    result = patch_effects(gpt2, outcome_for(gpt2), pairs, sites, ["factor:age", "last"], progress=reported.append)
    work = result.work
    assert work["patches"] == sum(reported) == len(pairs) * len(sites) * 2
    assert work["capture_forwards"] == 2 * len(pairs)
    # Unit 0 keeps its age, which sits before the first changed token: every layer's age
    # patch writes what is already there. Unit 1's texts have equal lengths and end in the
    # same token: its last-token patch at resid_pre.0 (an embedding) changes nothing.
    assert work["patches_skipped_identical"] == len(sites) + 1
    n_layers = architecture_of(gpt2.model).n_layers
    plain_layers = (work["patches"] + 2 * len(pairs)) * n_layers
    assert work["layer_forwards"] < plain_layers


def test_tokens_before_the_first_difference_are_left_out_of_a_patch(gpt2, patch_case):
    """A head's output before the texts' first differing token is the same in both runs, so a
    patch at every position runs from that token on."""
    pairs = patch_case.pairs(gpt2)
    sites = model_sites(gpt2, ["head"])
    result = patch_effects(gpt2, outcome_for(gpt2), pairs, sites, ["all"])
    prefixes = []
    for pair in pairs:
        destination, source = (gpt2.tokenizer(text)["input_ids"] for text in (pair.destination.text, pair.source.text))
        prefixes.append(next(index for index, (a, b) in enumerate(zip(destination, source)) if a != b))
    assert result.work["pairs_skipped_identical"] == len(sites) * sum(prefixes)
    assert result.work["patches_skipped_identical"] == 0
    np.testing.assert_allclose(
        result.patched["outcome"], plain_loop(gpt2, outcome_for(gpt2), pairs, sites, ["all"]), atol=1e-5, rtol=0
    )


def test_a_factor_spanning_unequal_token_counts_patches_its_last_tokens(classifier, patch_case):
    (pair,) = patch_case.pairs(classifier, patch_case.units[:1])
    dest_tokens = classifier.tokenizer(pair.destination.text).tokens()
    src_tokens = classifier.tokenizer(pair.source.text).tokens()
    ((d, s),) = pair.positions["factor"]
    assert (dest_tokens[d], src_tokens[s]) == ("##id", "private")
    result = patch_effects(classifier, ClassLogit("yes"), [pair], [Site("resid_pre", 0)], ["factor", "all"])
    assert np.isfinite(result.patched["outcome"]).all()
    assert result.patched["outcome"].iloc[0] != pytest.approx(result.destination[0])


def test_bad_requests_are_rejected_with_the_bad_value(gpt2, classifier, patch_case):
    pairs, outcome = patch_case.pairs(gpt2), outcome_for(gpt2)
    site = [Site("resid_pre", 0)]
    with pytest.raises(InterventionError, match=r"'factor:weekday' is not aligned .*'all'"):
        patch_effects(gpt2, outcome, pairs, site, ["factor:weekday"])
    with pytest.raises(InterventionError, match=r"layer 5 is out of range; .* layers 0 to 1"):
        patch_effects(gpt2, outcome, pairs, [Site("attn_out", 5)], ["last"])
    with pytest.raises(InterventionError, match=r"head 7 is out of range; .* heads 0 to 1"):
        patch_effects(gpt2, outcome, pairs, [Site("head", 0, 7)], ["last"])
    with pytest.raises(InterventionError, match=r"Site objects, got 'resid_pre.0'; use Site.parse"):
        patch_effects(gpt2, outcome, pairs, ["resid_pre.0"], ["last"])
    with pytest.raises(InterventionError, match="must be sequences"):
        patch_effects(gpt2, outcome, pairs, site, "last")
    with pytest.raises(InterventionError, match=r"positions must be distinct; repeated: \['last"):
        patch_effects(gpt2, outcome, pairs, site, ["last", "last"])
    with pytest.raises(InterventionError, match="batch_size must be an int >= 1 or None, got 0"):
        patch_effects(gpt2, outcome, pairs, site, ["last"], batch_size=0)
    with pytest.raises(InterventionError, match=r"pairs\[0\] is a tuple, not an AlignedPair"):
        patch_effects(gpt2, outcome, [("a", "b")], site, ["last"])
    wrong_tokenizer = patch_case.pairs(classifier)
    with pytest.raises(InterventionError, match=r"pairs\[0\] position .* model's own tokenizer"):
        patch_effects(gpt2, outcome, wrong_tokenizer, site, ["all"])
    read_last = [
        align(
            pair.destination,
            pair.source,
            patch_case.template,
            classifier.tokenizer,
            treatment="insurance",
            decision="last",
        )
        for pair in wrong_tokenizer
    ]
    with pytest.raises(InterventionError, match=r"outcome at \(\(0, 0\),\) .* decision='first'"):
        patch_effects(classifier, ClassLogit("yes"), read_last, site, ["last"])


def test_no_pairs_or_no_sites_give_empty_results(gpt2, patch_case):
    outcome = outcome_for(gpt2)
    empty = patch_effects(gpt2, outcome, [], [Site("resid_pre", 0)], ["last"])
    assert empty.destination.shape == (0,) and len(empty.patched) == 0
    none = patch_effects(gpt2, outcome, patch_case.pairs(gpt2), [], ["last"])
    assert len(none.patched) == 0 and none.destination.shape == (len(patch_case.units),)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_engine_on_cuda_equals_the_plain_loop(gpt2_folder, patch_case):
    from interventions import ModelAdapter, ModelSpec

    adapter = ModelAdapter.load(ModelSpec(str(gpt2_folder), device="cuda", dtype="float32"))
    outcome, pairs = outcome_for(adapter), patch_case.pairs(adapter)
    sites = model_sites(adapter, COMPONENTS + NEW_COMPONENTS)
    result = patch_effects(adapter, outcome, pairs, sites, POSITIONS)
    cpu = patch_effects(ModelAdapter.load(ModelSpec(str(gpt2_folder), device="cpu")), outcome, pairs, sites, POSITIONS)
    np.testing.assert_allclose(result.patched["outcome"], cpu.patched["outcome"], atol=1e-4)
