"""Site names, the architecture table, and hooks at the sites it names."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM

from interventions import InterventionError, Site, architecture_of, model_sites
from interventions._hooks import site_hooks
from interventions._sites import module_at


@pytest.mark.parametrize(
    "name, site",
    [
        ("resid_pre.0", Site("resid_pre", 0)),
        ("resid_post.11", Site("resid_post", 11)),
        ("attn_out.3", Site("attn_out", 3)),
        ("mlp_out.2", Site("mlp_out", 2)),
        ("head.3.5", Site("head", 3, 5)),
    ],
)
def test_site_names_round_trip(name, site):
    assert Site.parse(name) == site
    assert site.name == name


@pytest.mark.parametrize(
    "name, message",
    [
        ("resid_pre", r"'resid_pre' is not COMPONENT.LAYER or head.LAYER.HEAD"),
        ("resid_pre.-1", r"is not COMPONENT.LAYER"),
        ("attn.3", r"unknown site component 'attn' \(did you mean 'attn_out'\?\)"),
        ("head.3", r"site head.3 with head=None: a head index is given exactly for"),
        ("mlp_out.3.1", r"site mlp_out.3 with head=1"),
    ],
)
def test_bad_site_names_say_what_is_wrong(name, message):
    with pytest.raises(InterventionError, match=message):
        Site.parse(name)


def test_model_sites_are_layer_major_with_heads_expanded(gpt2):
    sites = model_sites(gpt2, ["resid_pre", "head", "mlp_out"])
    assert [site.name for site in sites] == [
        "resid_pre.0",
        "head.0.0",
        "head.0.1",
        "mlp_out.0",
        "resid_pre.1",
        "head.1.0",
        "head.1.1",
        "mlp_out.1",
    ]
    assert model_sites(gpt2, ["attn_out"], layers=[1]) == (Site("attn_out", 1),)


def test_model_sites_reject_unknown_components_and_layers(gpt2):
    with pytest.raises(InterventionError, match=r"unknown site component 'mlp' \(did you mean"):
        model_sites(gpt2, ["mlp"])
    with pytest.raises(InterventionError, match=r"layer 2 is out of range; .* layers 0 to 1"):
        model_sites(gpt2, ["resid_pre"], layers=[0, 2])
    with pytest.raises(InterventionError, match="got the string 'head'; wrap it in a list"):
        model_sites(gpt2, "head")


@pytest.mark.parametrize(
    "model, family, readout, decision, heads, kv_heads",
    [
        ("gpt2", "gpt2", "lm_head", "last", 2, 2),
        ("llama", "llama", "lm_head", "last", 2, 1),
        ("qwen2", "llama", "lm_head", "last", 4, 2),
        ("mistral", "llama", "lm_head", "last", 2, 1),
        ("neox", "gpt_neox", "lm_head", "last", 2, 2),
        ("gpt2_classifier", "gpt2", "score", "last", 2, 2),
        ("classifier", "bert", "pooler", "first", 2, 2),
        ("roberta", "bert", "classification_head", "first", 2, 2),
        ("distilbert", "distilbert", "pre_classifier", "first", 2, 2),
    ],
)
def test_architectures_are_found_from_config_and_modules(model, family, readout, decision, heads, kv_heads, request):
    architecture = architecture_of(request.getfixturevalue(model).model)
    assert architecture.layout.family == family
    assert architecture.readout.name == readout
    assert architecture.decision == decision
    assert (architecture.n_layers, architecture.n_heads, architecture.n_kv_heads) == (2, heads, kv_heads)
    assert architecture.n_heads * architecture.d_head == 32


def test_an_unknown_architecture_lists_the_supported_ones_and_how_to_add_one():
    config = OPTConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2, word_embed_proj_dim=16
    )
    with torch.random.fork_rng():
        model = OPTForCausalLM(config)
    with pytest.raises(
        InterventionError,
        match=r"no site mapping for model_type 'opt' \(OPTForCausalLM\); supported model "
        r"types: bert, camembert, distilbert, .*gpt2, gpt_neox, llama, .* append a Layout to "
        r"ARCHITECTURES in interventions/_sites.py",
    ):
        architecture_of(model)


def test_a_known_model_type_with_other_modules_names_the_missing_one():
    with torch.random.fork_rng():
        model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    del model.transformer.h[0].ln_2
    with pytest.raises(
        InterventionError,
        match=r"mapped to the 'gpt2' layout, but .* no module "
        r"'h.0.ln_2'; fix that Layout row",
    ):
        architecture_of(model)


@pytest.mark.parametrize("model", ["gpt2", "llama", "neox", "classifier", "distilbert"])
def test_head_contributions_sum_to_attn_out_minus_the_projection_bias(model, request):
    adapter = request.getfixturevalue(model)
    architecture = architecture_of(adapter.model)
    layer = architecture.n_layers - 1
    captured = {}

    def keep(name):
        def edit(activation):
            captured[name] = activation[0]

        return edit

    ids = adapter.tokenizer("Patient: 67 year old with Medicaid insurance.", return_tensors="pt")
    with (
        torch.inference_mode(),
        site_hooks(
            adapter.model,
            architecture,
            {Site("head", layer, 0).point: keep("z"), Site("attn_out", layer).point: keep("attn_out")},
        ),
    ):
        adapter.model(input_ids=ids["input_ids"])
    o_proj = module_at(
        module_at(adapter.model.base_model, architecture.layout.blocks)[layer], architecture.layout.o_proj
    )
    # (in, out) weights: GPT-2's Conv1D stores them so, nn.Linear transposed.
    weight = o_proj.weight if type(o_proj).__name__ == "Conv1D" else o_proj.weight.T
    bias = 0 if o_proj.bias is None else o_proj.bias
    d_head = architecture.d_head
    with torch.inference_mode():
        contributions = [
            captured["z"][:, head * d_head : (head + 1) * d_head] @ weight[head * d_head : (head + 1) * d_head]
            for head in range(architecture.n_heads)
        ]
        torch.testing.assert_close(sum(contributions), captured["attn_out"] - bias, atol=1e-5, rtol=0)
    assert all(contribution.abs().max() > 1e-3 for contribution in contributions)


def test_hooks_are_removed_on_exit_and_on_error(gpt2):
    architecture = architecture_of(gpt2.model)
    edits = {
        Site.parse(name).point: lambda activation: None
        for name in ["resid_pre.0", "resid_post.1", "head.0.1", "attn_out.1", "mlp_out.0"]
    }

    def count() -> int:
        return sum(len(module._forward_hooks) + len(module._forward_pre_hooks) for module in gpt2.model.modules())

    before = count()
    with site_hooks(gpt2.model, architecture, edits):
        assert count() == before + 5
    assert count() == before
    with pytest.raises(RuntimeError, match="inside"), site_hooks(gpt2.model, architecture, edits):
        raise RuntimeError("inside")
    assert count() == before
