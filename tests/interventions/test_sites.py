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


MODELS = ["gpt2", "llama", "qwen2", "mistral", "neox", "gpt2_classifier", "classifier", "roberta", "distilbert"]


def _ids(adapter, text):
    return torch.tensor([adapter.tokenizer(text)["input_ids"]])


def _run(adapter, ids, edits, *, extra=None):
    """Logits of one forward with `edits` at sites (and `extra` (module, pre-hook) pairs)."""
    handles = [module.register_forward_pre_hook(hook, with_kwargs=True) for module, hook in extra or []]
    try:
        with torch.inference_mode(), site_hooks(adapter.model, architecture_of(adapter.model), edits):
            return adapter.model(input_ids=ids).logits[0].double()
    finally:
        for handle in handles:
            handle.remove()


def _capture(adapter, ids, points):
    kept = {}
    edits = {
        point: (lambda activation, point=point: kept.__setitem__(point, activation[0].clone())) for point in points
    }
    _run(adapter, ids, edits)
    return kept


def _writer(source, pairs, index=slice(None)):
    """An edit writing the source's values at the pairs (only at `index`, e.g. a head's slice)."""

    def edit(activation):
        activation = activation.clone()
        for d, s in pairs:
            activation[0, d][index] = source[s][index]
        return activation

    return edit


@pytest.mark.parametrize("model", MODELS)
def test_reading_every_point_changes_nothing_and_patchable_attention_is_the_models_own(model, request):
    adapter = request.getfixturevalue(model)
    architecture = architecture_of(adapter.model)
    ids = _ids(adapter, "Patient: 67 year old female with Medicaid insurance. Refer for CT? Answer:")
    with torch.inference_mode():
        plain = adapter.model(input_ids=ids).logits[0].double()
    kinds = ["stream", "mid", "q", "k", "v", "pattern", "z", "attn_out", "mlp_in", "mlp_out"]
    points = [(kind, layer) for layer in range(architecture.n_layers) for kind in kinds]
    kept = {}
    edits = {point: (lambda activation, point=point: kept.__setitem__(point, activation)) for point in points}
    torch.testing.assert_close(_run(adapter, ids, edits), plain, atol=1e-5, rtol=0)
    assert adapter.model.config._attn_implementation == "sdpa"  # switched back
    n = ids.shape[1]
    assert kept[("pattern", 0)].shape == (1, n, architecture.n_heads, n)
    torch.testing.assert_close(kept[("pattern", 0)].sum(-1), torch.ones(1, n, architecture.n_heads))
    assert kept[("k", 0)].shape == (1, n, architecture.n_kv_heads * architecture.d_head)
    assert kept[("q", 0)].shape == (1, n, architecture.n_heads * architecture.d_head)


@pytest.mark.parametrize("model", MODELS)
def test_every_heads_queries_keys_and_values_together_are_the_attention_input(model, request, patch_case):
    """q, k and v are linear in the attention module's input (the attention norm's output in
    pre-norm blocks, the block input in post-norm ones), before any rotary embedding: writing
    all of them from the source equals writing that input, for arms of unequal length too."""
    adapter = request.getfixturevalue(model)
    architecture = architecture_of(adapter.model)
    layer = architecture.n_layers - 1
    block = module_at(adapter.model.base_model, architecture.layout.blocks)[layer]
    attention = module_at(block, architecture.layout.attention)
    for pair in patch_case.pairs(adapter):
        destination, source = _ids(adapter, pair.destination.text), _ids(adapter, pair.source.text)
        inputs = []

        def keep_input(module, args, kwargs, into=inputs):
            into.append((args[0] if args else kwargs["hidden_states"])[0].clone())

        handle = attention.register_forward_pre_hook(keep_input, with_kwargs=True)
        try:
            projections = _capture(adapter, source, [(kind, layer) for kind in "qkv"])
        finally:
            handle.remove()
        for position in ["all", "factor", "last"]:
            pairs = pair.positions[position]
            write = _writer(inputs[0], pairs)

            def input_hook(module, args, kwargs, write=write):
                if args:
                    return (write(args[0]), *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": write(kwargs["hidden_states"])}

            expected = _run(adapter, destination, {}, extra=[(attention, input_hook)])
            edits = {(kind, layer): _writer(projections[(kind, layer)], pairs) for kind in "qkv"}
            torch.testing.assert_close(_run(adapter, destination, edits), expected, atol=1e-5, rtol=0)
            if position == "all":
                assert (expected - _run(adapter, destination, {})).abs().max() > 1e-3


@pytest.mark.parametrize("model", MODELS)
def test_a_kv_groups_patterns_and_values_together_are_its_heads_outputs(model, request, patch_case):
    """z = pattern @ values per head: writing the source's attention rows and values at every
    position equals writing those heads' z (arms of equal length, so keys pair one to one).
    Under grouped-query attention a value head is shared, so the identity covers every query
    head of its group."""
    adapter = request.getfixturevalue(model)
    architecture = architecture_of(adapter.model)
    d_head = architecture.d_head
    (pair,) = patch_case.pairs(adapter, patch_case.units[1:])
    destination, source = _ids(adapter, pair.destination.text), _ids(adapter, pair.source.text)
    every = pair.positions["all"]
    for layer in range(architecture.n_layers):
        kept = _capture(adapter, source, [("pattern", layer), ("v", layer), ("z", layer)])
        kv_head = architecture.n_kv_heads - 1
        group = [head for head in range(architecture.n_heads) if architecture.kv_head_of(head) == kv_head]
        columns = torch.cat([torch.arange(head * d_head, (head + 1) * d_head) for head in group])
        expected = _run(adapter, destination, {("z", layer): _writer(kept[("z", layer)], every, columns)})
        edits = {
            ("pattern", layer): _writer(kept[("pattern", layer)], every, group),
            ("v", layer): _writer(kept[("v", layer)], every, slice(kv_head * d_head, (kv_head + 1) * d_head)),
        }
        torch.testing.assert_close(_run(adapter, destination, edits), expected, atol=1e-5, rtol=0)
        assert (expected - _run(adapter, destination, {})).abs().max() > 1e-3


@pytest.mark.parametrize("model", MODELS)
def test_the_middle_stream_and_the_mlp_output_together_are_the_blocks_output(model, request, patch_case):
    """A block's output is its middle stream plus (or, post-norm, normalised with) its MLP
    output; in sequential and post-norm blocks the MLP reads the middle stream, so there the
    middle stream alone already gives the block's output at every position."""
    adapter = request.getfixturevalue(model)
    architecture = architecture_of(adapter.model)
    (pair,) = patch_case.pairs(adapter, patch_case.units[1:])
    destination, source = _ids(adapter, pair.destination.text), _ids(adapter, pair.source.text)
    every = pair.positions["all"]
    for layer in range(architecture.n_layers):
        kept = _capture(adapter, source, [("mid", layer), ("mlp_out", layer), ("stream", layer + 1)])
        expected = _run(adapter, destination, {("stream", layer + 1): _writer(kept[("stream", layer + 1)], every)})
        together = {point: _writer(kept[point], every) for point in [("mid", layer), ("mlp_out", layer)]}
        torch.testing.assert_close(_run(adapter, destination, together), expected, atol=1e-5, rtol=0)
        alone = _run(adapter, destination, {("mid", layer): _writer(kept[("mid", layer)], every)})
        if architecture.residual == "parallel":
            assert (alone - expected).abs().max() > 1e-3
        else:
            torch.testing.assert_close(alone, expected, atol=1e-5, rtol=0)


def test_kv_heads_are_named_by_their_own_index(llama, qwen2):
    assert [site.name for site in model_sites(qwen2, ["head_k", "head_q"], layers=[1])] == [
        "head_k.1.0",
        "head_k.1.1",
        "head_q.1.0",
        "head_q.1.1",
        "head_q.1.2",
        "head_q.1.3",
    ]
    architecture = architecture_of(qwen2.model)
    assert [architecture.kv_head_of(head) for head in range(4)] == [0, 0, 1, 1]
    with pytest.raises(
        InterventionError, match=r"'head_v.0.1': key/value head 1 is out of range; .* 0 to 0, each shared by 2"
    ):
        architecture_of(llama.model).check(Site.parse("head_v.0.1"))
    with pytest.raises(InterventionError, match=r"'head_pattern.0.2': head 2 is out of range"):
        architecture_of(llama.model).check(Site.parse("head_pattern.0.2"))


def test_a_pattern_edit_that_never_runs_is_an_error(gpt2, monkeypatch):
    """A model whose attention ignores the configured implementation cannot have its pattern patched."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    class AlwaysSdpa:
        def get_interface(self, name, default):
            return sdpa_attention_forward

    monkeypatch.setattr("transformers.models.gpt2.modeling_gpt2.ALL_ATTENTION_FUNCTIONS", AlwaysSdpa())
    architecture = architecture_of(gpt2.model)
    with (
        pytest.raises(InterventionError, match=r"cannot patch the attention pattern of GPT2Attention \(gpt2\)"),
        torch.inference_mode(),
        site_hooks(gpt2.model, architecture, {("pattern", 0): lambda weights: None}),
    ):
        gpt2.model(input_ids=_ids(gpt2, "Patient: 67"))
    assert gpt2.model.config._attn_implementation == "sdpa"
