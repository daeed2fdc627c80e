"""A model split by a device_map (here across CPU and disk) measures what the whole model measures."""

import sys

import numpy as np
import pytest
import torch

from interventions import (
    ContinuationLogProb,
    LogitDiff,
    ModelAdapter,
    ModelLoadError,
    ModelSpec,
    Site,
    attention_evidence,
    attribution_effects,
    evaluate_outcomes,
    gradient_x_input,
    integrated_gradients,
    model_sites,
    patch_effects,
)

POSITIONS = ["last", "factor", "all", "factor:age"]
COMPONENTS = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "head"]
INSIDE_ATTENTION = ["head_q", "head_k", "head_v", "head_pattern"]
# The second block and the output head stay on disk, loaded only while they run.
SPLIT = {
    "model.embed_tokens": "cpu",
    "model.rotary_emb": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.norm": "disk",
    "lm_head": "disk",
}


@pytest.fixture(scope="module", params=["mapped", "auto"])
def split(request, llama_folder, tmp_path_factory) -> ModelAdapter:
    """The tiny Llama split by SPLIT, or by "auto" with too little CPU memory for any weight."""
    pytest.importorskip("accelerate")
    placement = {"device_map": SPLIT} if request.param == "mapped" else {"device_map": "auto", "max_memory": {"cpu": 1}}
    offload = str(tmp_path_factory.mktemp("offload"))
    return ModelAdapter.load(ModelSpec(str(llama_folder), offload_folder=offload, **placement))


def test_a_split_model_takes_inputs_where_its_embeddings_run_and_keeps_its_fingerprint(split, llama):
    assert "disk" in split.model.hf_device_map.values()
    assert any(parameter.device.type == "meta" for parameter in split.model.parameters())  # offloaded
    assert split.device == torch.device("cpu") and split.dtype == torch.float32
    assert split.fingerprint() == llama.fingerprint()


@pytest.mark.parametrize("outcome", [LogitDiff(" yes", " no"), ContinuationLogProb(" yes no")])
def test_outcomes_equal_the_whole_model(split, llama, patch_case, outcome):
    texts = [patch_case.template.render(forms).text for unit in patch_case.units for forms in unit]
    whole = evaluate_outcomes(llama, texts, outcome)
    np.testing.assert_allclose(evaluate_outcomes(split, texts, outcome), whole, atol=1e-5, rtol=0)
    assert np.ptp(whole) > 1e-2


@pytest.mark.parametrize("components", [COMPONENTS, INSIDE_ATTENTION], ids=["blocks", "inside-attention"])
def test_patching_equals_the_whole_model(split, llama, patch_case, components):
    sites = model_sites(llama, components)
    whole = patch_effects(llama, LogitDiff(" yes", " no"), patch_case.pairs(llama), sites, POSITIONS)
    result = patch_effects(split, LogitDiff(" yes", " no"), patch_case.pairs(split), sites, POSITIONS)
    np.testing.assert_allclose(result.patched["outcome"], whole.patched["outcome"], atol=1e-5, rtol=0)
    np.testing.assert_allclose([result.destination, result.source], [whole.destination, whole.source], atol=1e-5)
    assert np.ptp(whole.patched["outcome"]) > 1e-2


def test_attribution_patching_equals_the_whole_model(split, llama, patch_case):
    """Gradients flow through the offloaded blocks: the first-order estimates are the whole model's."""
    sites = model_sites(llama, COMPONENTS)
    whole = attribution_effects(llama, LogitDiff(" yes", " no"), patch_case.pairs(llama), sites, POSITIONS)
    result = attribution_effects(split, LogitDiff(" yes", " no"), patch_case.pairs(split), sites, POSITIONS)
    np.testing.assert_allclose(result["estimate"], whole["estimate"], atol=1e-5, rtol=0)
    assert np.abs(whole["estimate"]).max() > 1e-2


def test_attention_and_saliency_equal_the_whole_model(split, llama, patch_case):
    texts = [patch_case.template.render(forms) for unit in patch_case.units for forms in unit]
    factors = ["age", "sex", "insurance"]
    outcome = LogitDiff(" yes", " no")
    readings = [
        lambda adapter: attention_evidence(adapter, texts, factors).spans,
        lambda adapter: gradient_x_input(adapter, texts, factors, outcome).spans,
        lambda adapter: integrated_gradients(adapter, texts, factors, outcome, n_steps=8).spans,
    ]
    for read in readings:
        whole, mine = read(llama), read(split)
        assert whole.drop(columns="value").equals(mine.drop(columns="value"))
        np.testing.assert_allclose(mine["value"], whole["value"], atol=1e-5, rtol=0)
        assert np.abs(whole["value"]).max() > 1e-3


def test_patching_every_position_of_resid_pre_0_of_a_split_model_gives_the_source_outcome(split, patch_case):
    pairs = patch_case.pairs(split, patch_case.units[1:])  # texts of equal token length
    result = patch_effects(split, LogitDiff(" yes", " no"), pairs, [Site("resid_pre", 0)], ["all"])
    np.testing.assert_allclose(result.patched["outcome"], result.source, atol=1e-5, rtol=0)
    assert abs(result.source[0] - result.destination[0]) > 1e-3


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("bits", ["8bit", "4bit"])
def test_quantization_without_cuda_is_refused(llama_folder, bits):
    with pytest.raises(ModelLoadError, match=f"quantization '{bits}' runs on CUDA .* but CUDA is not available"):
        ModelAdapter.load(ModelSpec(str(llama_folder), quantization=bits))


def test_missing_packages_are_named(llama_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(ModelLoadError, match="device_map needs the accelerate package.*pip install accelerate"):
        ModelAdapter.load(ModelSpec(str(llama_folder), device_map=SPLIT))
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ModelLoadError, match="quantization '4bit' needs the bitsandbytes package.*pip install"):
        ModelAdapter.load(ModelSpec(str(llama_folder), device_map={"": "cpu"}, quantization="4bit"))


def test_a_device_map_on_an_absent_cuda_device_is_named(llama_folder):
    pytest.importorskip("accelerate")
    with pytest.raises(ModelLoadError, match="device 'cuda:7'"):
        ModelAdapter.load(ModelSpec(str(llama_folder), device_map={**SPLIT, "model.layers.0": "cuda:7"}))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_split_across_cuda_and_cpu_runs_on_cuda_and_equals_the_whole_model(llama_folder, llama, patch_case):
    pytest.importorskip("accelerate")
    placement = {**SPLIT, "model.embed_tokens": "cuda:0", "model.layers.0": "cuda:0", "model.layers.1": "cpu"}
    split = ModelAdapter.load(ModelSpec(str(llama_folder), device_map=placement, dtype="float32"))
    assert split.device == torch.device("cuda", 0)
    sites = model_sites(llama, COMPONENTS)
    whole = patch_effects(llama, LogitDiff(" yes", " no"), patch_case.pairs(llama), sites, POSITIONS)
    result = patch_effects(split, LogitDiff(" yes", " no"), patch_case.pairs(split), sites, POSITIONS)
    np.testing.assert_allclose(result.patched["outcome"], whole.patched["outcome"], atol=1e-4, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("bits", ["8bit", "4bit"])
def test_a_quantized_model_loads_on_cuda(llama_folder, patch_case, bits):
    pytest.importorskip("accelerate")
    pytest.importorskip("bitsandbytes")
    adapter = ModelAdapter.load(ModelSpec(str(llama_folder), quantization=bits))
    assert adapter.device.type == "cuda"
    texts = [patch_case.template.render(forms).text for forms in patch_case.units[0]]
    assert np.isfinite(evaluate_outcomes(adapter, texts, LogitDiff(" yes", " no"))).all()
