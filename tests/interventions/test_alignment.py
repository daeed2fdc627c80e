"""Aligning two renders of one template under subword tokenizers."""

import pytest

from interventions import AlignedPair, InterventionError, Template, align

TEMPLATE = Template.parse("Patient with {insurance} insurance, aged {age}. Plan: {insurance}")
MEDICAID = {"insurance": "Medicaid", "age": "67"}
PRIVATE = {"insurance": "private", "age": "67"}


def tokens(tokenizer, text: str) -> list[str]:
    return tokenizer(text).tokens()


def test_wordpiece_factor_of_unequal_length_pairs_its_last_pieces(minilm_tokenizer):
    pair = align(TEMPLATE.render(MEDICAID), TEMPLATE.render(PRIVATE), TEMPLATE, minilm_tokenizer, treatment="insurance")
    dest = tokens(minilm_tokenizer, pair.destination.text)
    src = tokens(minilm_tokenizer, pair.source.text)
    assert len(dest) == len(src) + 4  # Medicaid = med ##ica ##id, twice
    factor = pair.positions["factor"]
    assert [(dest[d], src[s]) for d, s in factor] == [("##id", "private"), ("##id", "private")]
    assert pair.positions["factor:insurance"] == factor
    ((d_age, s_age),) = pair.positions["factor:age"]
    assert dest[d_age] == src[s_age] == "67" and d_age == s_age + 2
    assert pair.positions["last"] == ((0, 0),)  # a CLS-first tokenizer: the [CLS] position
    every = dict(pair.positions["all"])
    assert every[0] == 0 and every[len(dest) - 1] == len(src) - 1  # [CLS] and [SEP]
    assert all(dest[d] == src[s] for d, s in every.items() if (d, s) not in factor)
    assert len(every) == len(src)  # each source token is reached once
    unmatched = [dest[d] for d in range(len(dest)) if d not in every]
    assert unmatched == ["med", "##ica", "med", "##ica"]


@pytest.mark.parametrize("tokenizer_name", ["bpe_tokenizer", "untrimmed_bpe_tokenizer"])
def test_byte_level_bpe_alignment_keeps_literal_text_token_for_token(tokenizer_name, request):
    tokenizer = request.getfixturevalue(tokenizer_name)
    pair = align(TEMPLATE.render(MEDICAID), TEMPLATE.render(PRIVATE), TEMPLATE, tokenizer, treatment="insurance")
    dest = tokens(tokenizer, pair.destination.text)
    src = tokens(tokenizer, pair.source.text)
    assert len(dest) > len(src)
    assert [src[s] for _, s in pair.positions["factor"]] == ["Ġprivate", "Ġprivate"]
    assert pair.positions["last"] == ((len(dest) - 1, len(src) - 1),)
    every = pair.positions["all"]
    assert every[0] == (0, 0) and dest[0] == "<s>"
    literal = [(d, s) for d, s in every if (d, s) not in pair.positions["factor"]]
    assert all(dest[d] == src[s] for d, s in literal)
    assert [d for d, _ in every] == sorted({d for d, _ in every})


def test_equal_lengths_pair_every_token_in_place(bpe_tokenizer):
    pair = align(
        TEMPLATE.render({"insurance": "no", "age": "24"}),
        TEMPLATE.render(PRIVATE),
        TEMPLATE,
        bpe_tokenizer,
        treatment="age",
    )
    n = len(tokens(bpe_tokenizer, pair.destination.text))
    assert pair.positions["all"] == tuple((i, i) for i in range(n))
    assert len(pair.positions["factor:insurance"]) == 2
    assert pair.positions["factor"] == pair.positions["factor:age"]


def test_decision_position_can_be_set(minilm_tokenizer, bpe_tokenizer):
    dest, src = TEMPLATE.render(MEDICAID), TEMPLATE.render(PRIVATE)
    last = align(dest, src, TEMPLATE, minilm_tokenizer, treatment="age", decision="last")
    n_dest, n_src = (len(tokens(minilm_tokenizer, text.text)) for text in (dest, src))
    assert last.positions["last"] == ((n_dest - 1, n_src - 1),)
    first = align(dest, src, TEMPLATE, bpe_tokenizer, treatment="age", decision="first")
    assert first.positions["last"] == ((0, 0),)
    with pytest.raises(InterventionError, match="'auto', 'last' or 'first', got 'cls'"):
        align(dest, src, TEMPLATE, bpe_tokenizer, treatment="age", decision="cls")


def test_aligned_pairs_are_immutable(bpe_tokenizer):
    pair = align(TEMPLATE.render(MEDICAID), TEMPLATE.render(PRIVATE), TEMPLATE, bpe_tokenizer, treatment="insurance")
    assert isinstance(pair, AlignedPair)
    with pytest.raises(TypeError):
        pair.positions["extra"] = ((0, 0),)


def test_texts_must_render_the_template_and_the_treatment_must_be_a_slot(bpe_tokenizer):
    dest, src = TEMPLATE.render(MEDICAID), TEMPLATE.render(PRIVATE)
    other = Template.parse("Insurance: {insurance}, aged {age}. Plan: {insurance}")
    with pytest.raises(InterventionError, match=r"'sex' is not a slot .* \['age', 'insurance'\]"):
        align(dest, src, TEMPLATE, bpe_tokenizer, treatment="sex")
    with pytest.raises(InterventionError, match="the source text .* is not a render of template"):
        align(dest, other.render(PRIVATE), TEMPLATE, bpe_tokenizer, treatment="insurance")
    with pytest.raises(InterventionError, match="the destination text .* is not a render"):
        align(dest, src, other, bpe_tokenizer, treatment="insurance")
