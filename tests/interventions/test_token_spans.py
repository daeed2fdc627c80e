"""Token spans of slots under WordPiece and byte-level BPE tokenizers."""

import pytest

from interventions import InterventionError, RenderedText, Template

TEMPLATE = Template.parse("{age} year old with {insurance} insurance, aged {age}. Plan: {insurance}")
FORMS = {"age": "67", "insurance": "Medicaid"}


def check_spans(rendered: RenderedText, tokenizer, *, lowercase: bool) -> dict:
    """Assert each token span decodes to its form and no outside token touches the slot."""
    encoding = tokenizer(rendered.text, add_special_tokens=True, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    token_spans = rendered.token_spans(tokenizer)
    assert list(token_spans) == list(rendered.spans)
    for slot, char_spans in rendered.spans.items():
        assert len(token_spans[slot]) == len(char_spans)
        for (char_start, char_end), (first, last) in zip(char_spans, token_spans[slot]):
            form = rendered.text[char_start:char_end]
            decoded = tokenizer.decode(ids[first:last]).strip()
            assert decoded == (form.lower() if lowercase else form)
            outside = [
                index
                for index, (start, end) in enumerate(offsets)
                if not first <= index < last and start < char_end and end > char_start
            ]
            assert outside == []
    return token_spans


def test_wordpiece_spans_cover_subword_pieces_and_skip_special_tokens(minilm_tokenizer):
    rendered = TEMPLATE.render(FORMS)
    spans = check_spans(rendered, minilm_tokenizer, lowercase=True)
    tokens = minilm_tokenizer(rendered.text).tokens()
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert spans["age"][0] == (1, 2)  # "67" is one token, right after [CLS]
    first, last = spans["insurance"][0]
    assert tokens[first:last] == ["med", "##ica", "##id"]
    assert spans["insurance"][1][1] == len(tokens) - 1  # ends before [SEP]


@pytest.mark.parametrize("tokenizer_name", ["bpe_tokenizer", "untrimmed_bpe_tokenizer"])
def test_byte_level_bpe_spans_include_leading_space_tokens(tokenizer_name, request):
    tokenizer = request.getfixturevalue(tokenizer_name)
    rendered = Template.parse("{insurance} and {plan} insurance, {age}").render(
        {"insurance": "Medicaid", "plan": "private", "age": "67"}
    )
    spans = check_spans(rendered, tokenizer, lowercase=False)
    tokens = tokenizer(rendered.text).tokens()
    assert tokens[0] == "<s>"
    assert spans["insurance"][0][0] == 1  # first slot starts after the BOS token
    first, last = spans["plan"][0]
    assert tokens[first:last] == ["Ġprivate"]
    first, last = spans["age"][0]
    assert tokens[first:last] == ["Ġ67"]


def test_token_spans_need_a_fast_tokenizer():
    class SlowTokenizer:
        is_fast = False

    with pytest.raises(InterventionError, match="need a fast tokenizer .* SlowTokenizer"):
        TEMPLATE.render(FORMS).token_spans(SlowTokenizer())


def test_a_slot_with_an_empty_form_covers_no_token(minilm_tokenizer):
    rendered = TEMPLATE.render({"age": "67", "insurance": ""})
    with pytest.raises(InterventionError, match="slot 'insurance' at characters 17..17 covers no"):
        rendered.token_spans(minilm_tokenizer)
