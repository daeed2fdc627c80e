"""Chat prompts: messages whose contents hold slots, rendered by the tokenizer's own chat template.

The chat template runs once, on the messages with each slot replaced by a sentinel that
templates leave alone (private-use characters, never whitespace, so trimming keeps them).
The text it wraps around the contents is escaped as literal template text and each
sentinel becomes its slot again, wherever the template put it: a system message moved into
the first user turn, or a content written twice, keeps its slots. The result is then
checked against the chat template itself, so a template that rewrites contents is refused
instead of rendering something else.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from jinja2 import TemplateError as JinjaError

from interventions._template import Template
from interventions.errors import TemplateError

_OPEN, _CLOSE = "\ue000", "\ue001"

_Chat = list[tuple[dict[str, Any], Template]]


def chat_template(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    *,
    assistant_prefix: str = "",
    forms: Mapping[str, Collection[str]] | None = None,
) -> Template:
    """A `Template` that renders `messages` as the tokenizer's chat template does, then `assistant_prefix`.

    Message contents (system included) and `assistant_prefix` are template text: `{factor}`
    slots, `{{` and `}}` for braces. Rendering the result with any surface forms gives
    `tokenizer.apply_chat_template(messages with the forms, tokenize=False,
    add_generation_prompt=True)` followed by the prefix, less the special tokens that the
    tokenizer adds itself when it encodes the text (Llama 3's template writes the BOS token
    the tokenizer adds again): the model sees exactly the chat template's tokens. Only the
    tokenizer is needed, no model weights.

    A template that trims contents changes a form with whitespace at a content's edge;
    `forms` (slot -> its surface forms) checks each form in its slot against the chat
    template. Raises TemplateError when the tokenizer has no chat template, a message is
    malformed, or the chat template drops or rewrites a slot's content.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise TemplateError(
            "the tokenizer has no chat template, so chat messages cannot be rendered; render prompts "
            "from a plain template instead"
        )
    chat = _parse(messages)
    prefix = _parse_text("assistant_prefix", assistant_prefix)
    names = list(dict.fromkeys(slot for _, content in chat for slot in content.slots))
    sentinels = {name: f"{_OPEN}{index}{_CLOSE}" for index, name in enumerate(names)}
    text = _render(tokenizer, chat, sentinels)
    for name, sentinel in sentinels.items():
        if sentinel not in text:
            raise TemplateError(
                f"the chat template drops or rewrites the message content holding slot {{{name}}}, so the slot "
                "cannot be located in the prompt; move the slot to a message the template writes out as it is"
            )
    text = text.replace("{", "{{").replace("}", "}}")
    for name, sentinel in sentinels.items():
        text = text.replace(sentinel, f"{{{name}}}")
    template = Template.parse(text + assistant_prefix)
    _check(template, tokenizer, chat, prefix, forms)
    return template


def _parse(messages: Sequence[Mapping[str, str]]) -> _Chat:
    """Each message's fields and its content parsed as a template."""
    if isinstance(messages, (str, Mapping)) or not isinstance(messages, Sequence) or not messages:
        raise TemplateError(
            f"messages must be a non-empty list of {{'role': ..., 'content': ...}} mappings, got {messages!r}"
        )
    chat = []
    for index, message in enumerate(messages):
        if not (
            isinstance(message, Mapping)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            raise TemplateError(f"messages[{index}] must map 'role' and 'content' to strings, got {message!r}")
        chat.append((dict(message), _parse_text(f"messages[{index}].content", message["content"])))
    return chat


def _parse_text(where: str, text: str) -> Template:
    """`text` parsed as a template; errors name `where` it came from."""
    if not isinstance(text, str):
        raise TemplateError(f"{where} must be a string, got {text!r}")
    if _OPEN in text or _CLOSE in text:
        raise TemplateError(
            f"{where} holds the private-use character U+E000 or U+E001, which marks slots in chat templates; remove it"
        )
    try:
        return Template.parse(text)
    except TemplateError as error:
        raise TemplateError(f"{where}: {error}") from None


def _render(tokenizer: Any, chat: _Chat, forms: Mapping[str, str]) -> str:
    """The chat template's text for the messages filled with `forms`, less the tokenizer's own leading specials."""
    messages = [{**fields, "content": content.render(forms).text} for fields, content in chat]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except (JinjaError, ValueError) as error:
        raise TemplateError(f"the tokenizer's chat template fails on these messages: {error}") from error
    lead = _added_lead(tokenizer)
    return text[len(lead) :] if lead and text.startswith(lead) else text


def _added_lead(tokenizer: Any) -> str:
    """The text of the special tokens the tokenizer puts before every text it encodes (a BOS token)."""
    encoding = tokenizer("x", add_special_tokens=True, return_special_tokens_mask=True)
    lead = []
    for token_id, special in zip(encoding["input_ids"], encoding["special_tokens_mask"]):
        if not special:
            break
        lead.append(token_id)
    return "".join(tokenizer.convert_ids_to_tokens(lead))


def _check(
    template: Template,
    tokenizer: Any,
    chat: _Chat,
    prefix: Template,
    forms: Mapping[str, Collection[str]] | None,
) -> None:
    """Render `template` as the chat template does: for plain forms, and each of `forms` in its slot."""
    names = list(dict.fromkeys(template.slots))
    base = {name: name for name in names}
    trials: list[tuple[str | None, dict[str, str]]] = [(None, base)]
    if forms is not None:
        for name in names:
            if name not in forms:
                raise TemplateError(f"forms has no surface forms for slot {{{name}}}; give every slot's forms")
            given = forms[name]
            if isinstance(given, str) or not isinstance(given, Collection) or not given:
                raise TemplateError(f"forms[{name!r}] must be a non-empty collection of surface forms, got {given!r}")
            trials += [(name, {**base, name: form}) for form in given]
    for name, values in trials:
        expected = _render(tokenizer, chat, values) + prefix.render(values).text
        rendered = template.render(values).text
        if rendered != expected:
            at = next(
                (i for i, (a, b) in enumerate(zip(rendered, expected)) if a != b), min(map(len, (rendered, expected)))
            )
            found = f"at character {at} it renders {expected[at : at + 30]!r} where the prompt has {rendered[at : at + 30]!r}"
            if name is None:
                raise TemplateError(
                    f"the chat template rewrites message contents ({found}), so their slots cannot be filled in "
                    "place; use a chat template that writes contents as they are, or a plain prompt template"
                )
            raise TemplateError(
                f"the chat template rewrites the form {values[name]!r} of slot {{{name}}} ({found}); a template "
                "that trims contents drops whitespace at their edges: give forms without it there"
            )
