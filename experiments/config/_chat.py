"""Chat prompts: the config's messages rendered by the model tokenizer's own chat template.

Stage: config. May import interventions, experiments.errors and the config stage.

Only the tokenizer is loaded (transformers, which imports torch), never the weights, and
only for a config with `prompt.chat` or `prompt.chats`. The rendered templates replace the
messages in the run folder's copy of the config, so a report or a resume of the copy needs
no tokenizer.
"""

from __future__ import annotations

from typing import Any

from experiments.config._builtin import resolve_model_path
from experiments.config._quote import quoted, shortened
from experiments.config._schema import ExperimentConfig
from experiments.errors import ConfigError
from interventions import Template, TemplateError, chat_template


def chat_templates(config: ExperimentConfig, model_path: str) -> tuple[Template, ...]:
    """One template per chat variant, each checked against the chat template with every factor's surface forms."""
    prompt = config.prompt
    key = "chat" if prompt.chat is not None else "chats"
    tokenizer = _tokenizer(config, resolve_model_path(model_path), key)
    forms = {
        name: [form for forms in factor.values.values() for form in forms] for name, factor in config.factors.items()
    }
    templates = []
    for index, messages in enumerate(prompt.conversations):
        path = "prompt.chat" if key == "chat" else f"prompt.chats[{index}]"
        chat = [message.model_dump() for message in messages]
        try:
            templates.append(chat_template(tokenizer, chat, assistant_prefix=prompt.assistant_prefix, forms=forms))
        except TemplateError as error:
            reason = str(error)
            if getattr(tokenizer, "chat_template", None) is None:
                reason = f"the tokenizer of {quoted(config.model.id)} has no chat template; use prompt.template instead"
            raise ConfigError(shortened(reason), path=path) from None
    return tuple(templates)


def _tokenizer(config: ExperimentConfig, model_path: str, key: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            model_path, trust_remote_code=config.model.trust_remote_code, revision=config.model.revision
        )
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"prompt.{key} is rendered by the model's tokenizer, which could not be loaded from "
            f"{quoted(model_path)}: {shortened(str(error), limit=300)}",
            path="model.id",
        ) from None
