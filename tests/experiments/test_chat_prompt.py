"""A chat prompt is rendered by the model tokenizer's own chat template, with each factor's words as slots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from experiments import ConfigError, load_experiment, run_experiment
from tests.experiments._tiny_runs import save_tiny_chat_model

MESSAGES = [
    {"role": "system", "content": "You triage patients. Today is {weekday}."},
    {"role": "user", "content": "A {age} year old {sex} with {insurance} insurance and {symptom}. Refer?"},
]
FACTORS = {
    "age": {"values": {"young": ["24", "31"], "old": ["67", "74"]}},
    "sex": {"values": {"female": ["woman"], "male": ["man"]}},
    "insurance": {"values": {"private": ["private"], "none": ["no"]}},
    "symptom": {"values": {"mild": ["a cough"], "severe": ["chest pain"]}},
    "weekday": {"values": {"weekday": ["Monday"], "weekend": ["Sunday"]}},
}


def _config(folder: Path, prompt: dict) -> Path:
    config = {
        "name": "chat",
        "model": {"id": "model", "device": "cpu"},
        "outcome": {"type": "logit_diff", "answers": {"positive": "yes", "negative": "no"}},
        "prompt": prompt,
        "factors": FACTORS,
        "graph": {"edges": [f"{name} -> decision" for name in FACTORS]},
        "effects": [{"treatment": "insurance", "contrast": ["none", "private"]}],
        "sampling": {"units": 8, "seed": 1},
        "inference": {"bootstrap": 200},
    }
    path = folder / "chat.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("chat") / "model")


def test_the_rendered_prompt_is_the_chat_templates_output_with_the_assistant_prefix(
    chat_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "model").symlink_to(chat_model)
    experiment = load_experiment(_config(tmp_path, {"chat": MESSAGES, "assistant_prefix": "Answer:"}))
    (template,) = experiment.templates
    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    forms = {"age": "67", "sex": "woman", "insurance": "no", "symptom": "chest pain", "weekday": "Sunday"}
    rendered = template.render(forms)
    filled = [{**message, "content": message["content"].format(**forms)} for message in MESSAGES]
    expected = tokenizer.apply_chat_template(filled, tokenize=False, add_generation_prompt=True) + "Answer:"
    assert rendered.text == expected
    for factor, form in forms.items():
        ((start, end),) = rendered.spans[factor]
        assert rendered.text[start:end] == form


def test_a_chat_run_keeps_the_rendered_templates_so_its_folder_needs_no_tokenizer(
    chat_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "model").symlink_to(chat_model)
    prompt = {
        "chats": [MESSAGES, [{"role": "system", "content": "Be brief. It is {weekday}."}, MESSAGES[1]]],
        "assistant_prefix": "Answer:",
    }
    experiment = load_experiment(_config(tmp_path, prompt))
    result = run_experiment(experiment, out_dir=tmp_path / "run")
    assert json.loads((result.folder / "manifest.json").read_text())["status"] == "complete"
    stored = yaml.safe_load((result.folder / "config.yaml").read_text())
    assert stored["prompt"]["chats"] is None and stored["prompt"]["chat"] is None
    assert stored["prompt"]["templates"] == [template.text for template in experiment.templates]
    assert all("<|im_start|>system" in text for text in stored["prompt"]["templates"])


def test_a_tokenizer_without_a_chat_template_is_a_config_error_naming_the_alternative(tmp_path: Path) -> None:
    save_tiny_chat_model(tmp_path / "model", chat_template=None)
    with pytest.raises(
        ConfigError, match=r"prompt.chat: the tokenizer of 'model' has no chat template; use prompt.template"
    ):
        load_experiment(_config(tmp_path, {"chat": MESSAGES}))
