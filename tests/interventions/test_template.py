"""Template parsing and rendering: slots, escapes, and exact character spans."""

from dataclasses import FrozenInstanceError

import pytest

from interventions import Template, TemplateError

FORMS = {"age": "67", "insurance": "Medicaid", "sex": "female"}


@pytest.mark.parametrize(
    "text, slots",
    [
        ("no slots at all", ()),
        ("{age} year old {sex}", ("age", "sex")),
        ("{age}, again {age} and {insurance}{age}", ("age", "age", "insurance", "age")),
        ("{{literal}} {age} }} {{ {{{sex}}}", ("age", "sex")),
        ("{_private_2}", ("_private_2",)),
    ],
)
def test_parse_finds_slots_in_order_and_render_matches_str_format(text, slots):
    forms = {**FORMS, "_private_2": "x"}
    template = Template.parse(text)
    rendered = template.render(forms)
    assert template.slots == slots
    assert rendered.text == text.format(**forms)


def test_render_records_the_span_of_every_slot_occurrence():
    template = Template.parse("{{x}} {age}: {age}{sex} with {insurance} insurance ({age})")
    rendered = template.render(FORMS)
    assert list(rendered.spans) == ["age", "sex", "insurance"]
    assert len(rendered.spans["age"]) == 3
    for slot, spans in rendered.spans.items():
        for start, end in spans:
            assert rendered.text[start:end] == FORMS[slot]
    assert rendered.spans["age"][0] == (4, 6)  # after the escaped "{x} "


def test_render_ignores_extra_forms_and_names_a_missing_slot():
    template = Template.parse("{age} year old {sex}")
    assert template.render({**FORMS, "unused": "?"}).text == "67 year old female"
    with pytest.raises(TemplateError, match=r"no surface form for slot\(s\) \['sex'\]"):
        template.render({"age": "67"})


@pytest.mark.parametrize(
    "text, message",
    [
        ("age {age", r"unclosed '\{' at position 4"),
        ("age {a{ge}", r"unclosed '\{' at position 4"),
        ("age} {sex}", r"unmatched '\}' at position 3"),
        ("{age}}", r"unmatched '\}' at position 5"),
        ("age {}", r"empty slot '\{\}' at position 4"),
        ("{age group}", r"slot name 'age group' at position 0 .* not an identifier"),
        ("{1st}", r"slot name '1st' .* not an identifier"),
        ("{age:>3}", r"slot name 'age:>3' .* not an identifier"),
    ],
)
def test_parse_rejects_malformed_templates(text, message):
    with pytest.raises(TemplateError, match=message):
        Template.parse(text)


def test_template_and_rendered_text_are_immutable():
    template = Template.parse("{age}")
    rendered = template.render(FORMS)
    assert template == Template("{age}")
    with pytest.raises(FrozenInstanceError):
        template.text = "{sex}"
    with pytest.raises(TypeError):
        rendered.spans["age"] = ((0, 1),)
