"""Loading models through ModelSpec: devices, dtypes, padding, errors, fingerprints."""

import pickle
from dataclasses import replace

import pytest
import torch
import transformers

from interventions import InterventionError, ModelAdapter, ModelLoadError, ModelSpec


def test_load_gives_an_eval_model_with_right_padding_and_eos_as_pad(gpt2):
    assert not gpt2.model.training
    assert gpt2.device == torch.device("cpu") and gpt2.dtype == torch.float32
    assert gpt2.tokenizer.padding_side == "right"
    assert gpt2.tokenizer.pad_token == gpt2.tokenizer.eos_token == "</s>"
    assert gpt2.model.config.pad_token_id == gpt2.tokenizer.pad_token_id


def test_classifier_keeps_its_own_pad_token(classifier):
    assert classifier.tokenizer.pad_token == "[PAD]"
    assert type(classifier.model).__name__ == "BertForSequenceClassification"


def test_dtype_option_sets_the_parameter_dtype(gpt2_folder):
    adapter = ModelAdapter.load(ModelSpec(str(gpt2_folder), device="cpu", dtype="bfloat16"))
    assert adapter.dtype == torch.bfloat16
    assert {parameter.dtype for parameter in adapter.model.parameters()} == {torch.bfloat16}


def test_auto_device_is_cuda_only_when_available(gpt2_folder):
    adapter = ModelAdapter.load(ModelSpec(str(gpt2_folder)))
    assert adapter.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_remote_code_is_off_unless_the_spec_turns_it_on(gpt2_folder, monkeypatch):
    calls = []
    load = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return load(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    ModelAdapter.load(ModelSpec(str(gpt2_folder), device="cpu"))
    assert calls[0]["trust_remote_code"] is False
    assert calls[0]["dtype"] == torch.float32


def test_fingerprint_is_stable_across_loads_and_sees_one_changed_weight(gpt2_folder):
    spec = ModelSpec(str(gpt2_folder), device="cpu")
    first, second, changed = (ModelAdapter.load(spec) for _ in range(3))
    assert first.fingerprint() == second.fingerprint()
    assert len(first.fingerprint()) == 64
    with torch.no_grad():
        changed.model.transformer.h[1].mlp.c_fc.weight[3, 5] += 1e-3
    assert changed.fingerprint() != first.fingerprint()


def test_missing_folder_is_named(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match=f"model folder '{missing}' does not exist"):
        ModelAdapter.load(ModelSpec(str(missing)))


def test_a_file_is_not_a_model_folder(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"")
    with pytest.raises(ModelLoadError, match=f"model path '{file}' is a file"):
        ModelAdapter.load(ModelSpec(str(file)))


def test_a_folder_without_a_model_is_unloadable(tmp_path, bpe_tokenizer):
    bpe_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=f"cannot load causal-lm model from '{tmp_path}'"):
        ModelAdapter.load(ModelSpec(str(tmp_path), device="cpu"))


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="cuda:7 exists here")
def test_absent_cuda_device_is_named(gpt2_folder):
    with pytest.raises(ModelLoadError, match="device 'cuda:7'"):
        ModelAdapter.load(ModelSpec(str(gpt2_folder), device="cuda:7"))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"device": "tpu"}, "device 'tpu' is not one of auto, cpu, cuda or cuda:N"),
        ({"device": "cuda:x"}, "device 'cuda:x' is not one of"),
        ({"dtype": "float64"}, "dtype 'float64' is not one of"),
        ({"task": "seq2seq"}, "task 'seq2seq' is not one of"),
        ({"device_map": "balanced"}, "device_map 'balanced' is neither 'auto' nor a mapping"),
        ({"device_map": {}}, "device_map {} is not a non-empty mapping"),
        ({"device_map": {"transformer.h.0": "tpu"}}, r"device_map\['transformer.h.0'\] is 'tpu'; map module names"),
        ({"device_map": {"": True}}, r"device_map\[''\] is True"),
        ({"device_map": "auto", "device": "cpu"}, "device 'cpu' and device_map both place the model"),
        ({"max_memory": {"cpu": "1GiB"}}, "max_memory applies only to a model split by device_map"),
        ({"offload_folder": "offload"}, "offload_folder applies only to a model split by device_map"),
        ({"device_map": {"": "cpu"}, "max_memory": {"cpu": 1}}, "max_memory caps what device_map 'auto' puts"),
        ({"device_map": "auto", "max_memory": {"tpu": 1}}, "max_memory device 'tpu' is not a GPU index"),
        ({"device_map": "auto", "max_memory": {"cpu": "1TB"}}, r"max_memory\['cpu'\] is '1TB'; give a number of bytes"),
        ({"quantization": "3bit"}, r"quantization '3bit' is not one of \['8bit', '4bit'\]"),
        ({"quantization": "8bit", "device": "cpu"}, "quantization '8bit' runs on CUDA .*, not on device 'cpu'"),
    ],
)
def test_bad_spec_values_are_named(gpt2_folder, options, message):
    with pytest.raises(ModelLoadError, match=message):
        ModelAdapter.load(ModelSpec(str(gpt2_folder), **options))


def test_a_device_map_is_kept_as_sorted_pairs_so_the_spec_stays_immutable_and_picklable():
    spec = ModelSpec("m", device_map={"lm_head": "disk", "": 0}, offload_folder="off")
    assert spec.device_map == (("", "cuda:0"), ("lm_head", "disk"))
    assert ModelSpec("m", device_map=spec.device_map, offload_folder="off") == spec
    assert pickle.loads(pickle.dumps(spec)) == spec and hash(spec) == hash(replace(spec))
    limited = ModelSpec("m", device_map="auto", max_memory={"cpu": "60GiB", "cuda:1": 2**30, 0: "20GB"})
    assert limited.max_memory == ((0, "20GB"), (1, 2**30), ("cpu", "60GiB"))


def test_load_errors_are_value_errors():
    assert issubclass(ModelLoadError, InterventionError)
    assert issubclass(InterventionError, ValueError)
