"""Chat prompts rendered by the tokenizer's own chat template, with every slot located."""

import copy
import itertools

import numpy as np
import pytest

from interventions import LogitDiff, Site, TemplateError, align, chat_template, evaluate_outcomes, patch_effects

MESSAGES = [
    {"role": "system", "content": "You triage patients aged {age}."},
    {"role": "user", "content": "{age} year old {sex} with {insurance} insurance. Refer for CT?"},
]
FORMS = {"age": ["24", "67"], "sex": ["male", "female"], "insurance": ["private", "Medicaid", "no"]}
# The Llama template writes the BOS token that its tokenizer adds again on encoding.
CHAT_MODELS = {"llama_chat": "<s>", "qwen2_chat": ""}


def assignments(forms=FORMS):
    """Every combination of the forms, one dict per assignment."""
    return [dict(zip(forms, values)) for values in itertools.product(*forms.values())]


def filled(messages, values):
    """The messages with each slot replaced by its form, as apply_chat_template takes them."""
    return [{**message, "content": message["content"].format(**values)} for message in messages]


def with_chat_template(tokenizer, template):
    """A copy of `tokenizer` whose chat template is `template`."""
    clone = copy.deepcopy(tokenizer)
    clone.chat_template = template
    return clone


def chat_text(tokenizer, messages, values):
    """The chat template's own text for the messages filled with `values`."""
    return tokenizer.apply_chat_template(filled(messages, values), tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("messages", [MESSAGES, MESSAGES[1:]], ids=["system", "no-system"])
def test_rendering_equals_the_chat_template_for_every_assignment(model, messages, request):
    tokenizer, lead = request.getfixturevalue(model).tokenizer, CHAT_MODELS[model]
    template = chat_template(tokenizer, messages, assistant_prefix=" Answer:")
    bare = chat_template(tokenizer, messages)
    for values in assignments():
        expected = chat_text(tokenizer, messages, values)
        assert lead + template.render(values).text == expected + " Answer:"
        # The model sees exactly the chat template's tokens: the tokenizer adds the lead back.
        chat_ids = tokenizer.apply_chat_template(filled(messages, values), add_generation_prompt=True)["input_ids"]
        assert tokenizer(bare.render(values).text)["input_ids"] == chat_ids
    assert chat_text(tokenizer, messages, assignments()[0]).startswith(lead + "<|")


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_each_factor_span_is_the_tokens_of_its_form(model, request):
    tokenizer = request.getfixturevalue(model).tokenizer
    template = chat_template(tokenizer, MESSAGES, assistant_prefix=" Answer:")
    assert template.slots == ("age", "age", "sex", "insurance")
    for values in assignments():
        rendered = template.render(values)
        ids = tokenizer(rendered.text)["input_ids"]
        for slot, spans in rendered.token_spans(tokenizer).items():
            assert [tokenizer.decode(ids[start:end]).strip() for start, end in spans] == [values[slot]] * len(spans)


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_patching_every_position_of_resid_pre_0_through_a_chat_template_gives_the_source_outcome(model, request):
    adapter = request.getfixturevalue(model)
    template = chat_template(adapter.tokenizer, MESSAGES, assistant_prefix=" Answer:")
    destination = template.render({"age": "24", "sex": "male", "insurance": "no"})
    source = template.render({"age": "31", "sex": "male", "insurance": "private"})
    pair = align(destination, source, template, adapter.tokenizer, treatment="insurance")
    n_tokens = len(adapter.tokenizer(destination.text)["input_ids"])
    assert len(pair.positions["all"]) == n_tokens == len(adapter.tokenizer(source.text)["input_ids"])
    outcome = LogitDiff(" yes", " no")
    result = patch_effects(adapter, outcome, [pair], [Site("resid_pre", 0)], ["all", "factor"])
    np.testing.assert_allclose(result.patched["outcome"].iloc[0], result.source[0], atol=1e-5, rtol=0)
    assert abs(result.source[0] - result.destination[0]) > 1e-3
    plain = evaluate_outcomes(adapter, [destination.text, source.text], outcome)
    np.testing.assert_allclose(plain, [result.destination[0], result.source[0]], atol=1e-5, rtol=0)


SYSTEM_IN_FIRST_TURN = (  # Llama 2: the system message goes inside the first [INST], stripped
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}{% if loop.first and system %}"
    "{{ bos_token + '[INST] <<SYS>>\\n' + system.strip() + '\\n<</SYS>>\\n\\n' + message['content'].strip() + ' [/INST]' }}"
    "{% else %}{{ '[INST] ' + message['content'].strip() + ' [/INST]' }}{% endif %}{% endfor %}"
)
REPEATS_AND_BRACES = (  # writes the last content twice, and braces of its own
    '{% for message in messages %}{"role": "{{ message["role"] }}"} {{ message["content"] }}\n{% endfor %}'
    "Recall: {{ messages[-1]['content'] }}\n"
)


@pytest.mark.parametrize(
    "template, ages, insurances",
    [(SYSTEM_IN_FIRST_TURN, 3, 1), (REPEATS_AND_BRACES, 4, 2)],  # age: in system, user (once or twice), prefix
    ids=["system-moved", "repeats"],
)
def test_templates_that_move_repeat_or_strip_contents_still_render_as_the_chat_template(
    template, ages, insurances, bpe_tokenizer
):
    tokenizer = with_chat_template(bpe_tokenizer, template)
    messages = [*MESSAGES[:1], {"role": "user", "content": "Rate {{sic}} {insurance} plans. {age}"}]
    prompt = chat_template(tokenizer, messages, assistant_prefix="{age}:", forms=FORMS)
    for values in assignments():
        expected = chat_text(tokenizer, messages, values).removeprefix("<s>") + values["age"] + ":"
        assert prompt.render(values).text == expected
    assert prompt.slots.count("age") == ages and prompt.slots.count("insurance") == insurances


def test_a_trimming_template_refuses_forms_with_whitespace_at_a_content_edge(llama_chat):
    tokenizer = llama_chat.tokenizer
    # Inside a content, whitespace survives trimming; at its edge it does not.
    chat_template(tokenizer, MESSAGES, forms={**FORMS, "insurance": [" Medicaid "]})
    with pytest.raises(
        TemplateError, match=r"rewrites the form ' 24' of slot \{age\} \(at character \d+ it renders '24"
    ):
        chat_template(tokenizer, MESSAGES, forms={**FORMS, "age": ["67", " 24"]})


HOSPITAL = [{"role": "system", "content": "You triage for {hospital}."}, *MESSAGES[1:]]


@pytest.mark.parametrize(
    "template, forms, message",
    [
        ("{% for m in messages %}{% if m['role'] != 'system' %}{{ m['content'] }}{% endif %}{% endfor %}", None,
         r"drops or rewrites the message content holding slot \{hospital\}"),
        ("{% for m in messages %}{{ m['content'] | upper }}{% endfor %}", None, "rewrites message contents .* use a chat template"),
        ("{% for m in messages %}{{ m['content'] | tojson }}{% endfor %}", {**FORMS, "hospital": ['St "Mary"']},
         r"rewrites the form 'St \"Mary\"' of slot \{hospital\}"),
        ("{{ raise_exception('Conversation roles must alternate') }}", None,
         "chat template fails on these messages: Conversation roles must alternate"),
    ],
    ids=["drops-system", "upper", "json-escapes", "raises"],
)  # fmt: skip
def test_templates_that_drop_or_rewrite_slots_are_refused(template, forms, message, bpe_tokenizer):
    with pytest.raises(TemplateError, match=message):
        chat_template(with_chat_template(bpe_tokenizer, template), HOSPITAL, forms=forms)


def test_bad_input_is_named(bpe_tokenizer, llama_chat):
    tokenizer = llama_chat.tokenizer
    with pytest.raises(TemplateError, match="the tokenizer has no chat template"):
        chat_template(bpe_tokenizer, MESSAGES)
    with pytest.raises(TemplateError, match="messages must be a non-empty list"):
        chat_template(tokenizer, [])
    with pytest.raises(TemplateError, match=r"messages\[1\] must map 'role' and 'content' to strings"):
        chat_template(tokenizer, [MESSAGES[0], {"role": "user"}])
    with pytest.raises(TemplateError, match=r"messages\[0\].content: unclosed '\{'"):
        chat_template(tokenizer, [{"role": "user", "content": "{age"}])
    with pytest.raises(TemplateError, match=r"assistant_prefix: empty slot"):
        chat_template(tokenizer, MESSAGES, assistant_prefix="{}")
    with pytest.raises(TemplateError, match=r"forms has no surface forms for slot \{sex\}"):
        chat_template(tokenizer, MESSAGES, forms={"age": ["24"], "insurance": ["no"]})
    with pytest.raises(TemplateError, match=r"forms\['age'\] must be a non-empty collection"):
        chat_template(tokenizer, MESSAGES, forms={**FORMS, "age": "24"})
