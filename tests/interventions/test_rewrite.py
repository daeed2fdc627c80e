"""Rewriting free text by rules: matching, refusals, the text outside spans kept, alignment."""

import pickle
import re
from itertools import pairwise, product
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interventions import (
    InterventionError,
    LogitDiff,
    RenderedText,
    Rewrite,
    RewriteError,
    RewriteRules,
    Site,
    Template,
    align,
    architecture_of,
    patch_effects,
)

INSURANCE_YAML = """\
factor: insurance
values: [private, public, none]
forms:                      # each row: the same thing said in each value
  - {private: "private insurance", public: "Medicaid", none: "no insurance"}
  - {private: "privately insured", public: "on Medicaid", none: "uninsured"}
"""


def write_rules(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def insurance(tmp_path_factory) -> RewriteRules:
    return RewriteRules.load(write_rules(tmp_path_factory.mktemp("rules"), INSURANCE_YAML), factor="insurance")


SEX = RewriteRules.load("builtin:sex", factor="sex")


@pytest.mark.parametrize(
    ("text", "source", "target", "expected"),
    [
        # the longest form first: "on Medicaid" before "Medicaid"
        ("Patient is on Medicaid.", "public", "none", "Patient is uninsured."),
        (
            "Medicaid card seen; on Medicaid since May.",
            "public",
            "private",
            "Private insurance card seen; privately insured since May.",
        ),
        # whitespace between a phrase's words may be any run, a line break included
        ("Has private\n  insurance through work.", "private", "public", "Has Medicaid through work."),
        ("PRIVATE INSURANCE: yes", "private", "none", "NO INSURANCE: yes"),
        ("Private Insurance Card", "private", "public", "Medicaid Card"),
        ("No insurance. Uninsured since 2019.", "none", "private", "Private insurance. Privately insured since 2019."),
        # a capitalised form matches only as written; its counterpart opens a sentence
        ("medicaid? No: Medicaid.", "public", "none", "medicaid? No: no insurance."),
        ("Seen today. Medicaid covers it.", "public", "none", "Seen today. No insurance covers it."),
        # inside longer words and hyphenated words nothing matches
        ("Non-Medicaid plans; on Medicaid now.", "public", "none", "Non-Medicaid plans; uninsured now."),
        (
            "Uninsured-looking, uninsuredness aside, he is uninsured.",
            "none",
            "public",
            "Uninsured-looking, uninsuredness aside, he is on Medicaid.",
        ),
    ],
)
def test_rule_files_rewrite_phrases_longest_first_keeping_case(insurance, text, source, target, expected):
    assert insurance.rewrite(text, source=source, target=target).rewritten.text == expected


def test_rules_load_from_a_path_or_a_string_and_know_their_values(tmp_path):
    path = write_rules(tmp_path, INSURANCE_YAML)
    for source in (path, str(path)):
        rules = RewriteRules.load(source, factor="insurance")
        assert (rules.factor, rules.values) == ("insurance", ("private", "public", "none"))
    assert rules.locate("on Medicaid, not private insurance") == {
        "private": ((17, 34),),
        "public": ((0, 11),),
        "none": (),
    }


def test_a_builtin_lexicon_serves_any_factor_name():
    gender = RewriteRules.load("builtin:sex", factor="gender")
    rewrite = gender.rewrite("She is here.", source="female", target="male")
    assert rewrite.factor == "gender" and rewrite.rewritten.spans == {"gender": ((0, 2),)}


@pytest.mark.parametrize(
    ("text", "source", "reason", "message"),
    [
        (
            "The patient is stable.",
            "female",
            "not_located",
            (
                r"sex: no form of any of the values \['female', 'male'\] appears in the text "
                r"'The patient is stable.'"
            ),
        ),
        (
            "He is stable.",
            "female",
            "value_mismatch",
            r"'He is stable.' is annotated 'female' but shows only forms of \['male'\]",
        ),
        (
            "She is stable.",
            "woman",
            "unknown_value",
            r"source value 'woman' is not one of the values \['female', 'male'\]",
        ),
    ],
)
def test_documents_that_cannot_be_rewritten_raise_with_a_reason(text, source, reason, message):
    with pytest.raises(RewriteError, match=message) as caught:
        SEX.rewrite(text, source=source, target="male")
    assert caught.value.reason == reason
    assert isinstance(caught.value, InterventionError)


def test_an_unknown_target_value_and_long_texts_in_messages():
    with pytest.raises(RewriteError, match=r"target value 'M' is not one of") as caught:
        SEX.rewrite("She is stable.", source="female", target="M")
    assert caught.value.reason == "unknown_value"
    with pytest.raises(RewriteError, match=r"the text 'x{57}\.\.\.' is annotated") as caught:
        SEX.rewrite("x" * 80 + " he", source="female", target="male")
    assert caught.value.reason == "value_mismatch"


def test_rewrite_errors_keep_their_reason_through_pickling():
    error = pickle.loads(pickle.dumps(RewriteError("not_located", "sex: no form")))
    assert (error.reason, str(error)) == ("not_located", "sex: no form")


def test_a_rewrite_that_changes_text_outside_its_spans_is_refused():
    original = RenderedText("She is here.", {"sex": ((0, 3),)})
    with pytest.raises(RewriteError, match=r"changes text outside the sex spans") as caught:
        Rewrite("sex", "female", "male", original, RenderedText("He is there.", {"sex": ((0, 2),)}))
    assert caught.value.reason == "outside_spans"
    with pytest.raises(RewriteError, match="outside the sex spans"):  # a span lost
        Rewrite(
            "sex",
            "female",
            "male",
            RenderedText("She and she.", {"sex": ((0, 3), (8, 11))}),
            RenderedText("He and she.", {"sex": ((0, 2),)}),
        )
    with pytest.raises(RewriteError, match="outside the sex spans"):  # spans out of order
        Rewrite(
            "sex", "female", "male", RenderedText("She.", {"sex": ((2, 1),)}), RenderedText("She.", {"sex": ((2, 1),)})
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("values: [a, b]\nform: []\n", r"rules.yaml: unknown key 'form' \(did you mean 'forms'\?\)"),
        ("values: [a, b]\n", r"rules.yaml: the key `forms` is missing"),
        ("- a\n- b\n", r"rules.yaml: a rule file is a mapping .* got list"),
        ("values: [a, b\n", r"rules.yaml: not valid YAML"),
        ("values: [yes, no]\nforms: [{a: x}]\n", r"rules.yaml: values\[0\]: True is not a string; quote it"),
        ("values: [a]\nforms: [{a: x}]\n", r"values: expected at least two distinct values"),
        ("values: [a, b]\nforms: {a: x}\n", r"forms: expected a non-empty list of rows"),
        ("values: [a, b]\nforms: [x]\n", r"forms\[0\]: a row maps each value to its form"),
        ("values: [a, b]\nforms: [{a: x, b: y}, {a: z}]\n", r"forms\[1\]: no form for \['b'\]"),
        (
            "values: [aaa, bbb]\nforms: [{aaa: x, bbc: y}]\n",
            r"forms\[0\]: 'bbc' is not a value \(did you mean 'bbb'\?\)",
        ),
        ("values: [a, b]\nforms: [{a: x, b: 'off'}, {a: y, b: off}]\n", r"forms\[1\]\.b: False is not a form"),
        ("values: [a, b]\nforms: [{a: ' x', b: y}]\n", r"forms\[0\]\.a: ' x' is not a form"),
        (
            "values: [a, b]\nforms: [{a: x, b: y}, {a: Y, b: z}]\n",
            r"forms\[1\]\.a: 'Y' is also a form of 'b' \(as 'y'\)",
        ),
        (
            "values: [a, b]\nforms: [{a: x, b: y, when: after_noun}]\n",
            r"forms\[0\]\.when: 'after_noun' is not a condition",
        ),
        (
            "values: [a, b]\nforms: [{a: x, b: y, when: before_noun}]\n",
            r"forms\[0\]\.a: 'x' is only in rows with `when`",
        ),
        ("values: [a, when]\nforms: [{a: x, when: y}]\n", r"'when' is the key of a row's condition"),
        (
            "factor: insurance\nvalues: [a, b]\nforms: [{a: x, b: y}]\n",
            r"factor: the rules are written for 'insurance', but were loaded for factor 'sex'",
        ),
        ("values: [a, b]\nforms: [{a: x, b: y}]\nfunction_words: the\n", r"function_words: expected a list of strings"),
    ],
)
def test_bad_rule_files_name_the_file_the_key_and_the_value(tmp_path, text, message):
    with pytest.raises(InterventionError, match=message):
        RewriteRules.load(write_rules(tmp_path, text), factor="sex")


def test_missing_files_and_unknown_builtins_say_what_exists(tmp_path):
    with pytest.raises(InterventionError, match=r"rule file '.*nope.yaml' does not exist"):
        RewriteRules.load(tmp_path / "nope.yaml", factor="sex")
    with pytest.raises(InterventionError, match=r"unknown builtin lexicon 'builtin:gender'; .* \['builtin:sex'\]"):
        RewriteRules.load("builtin:gender", factor="sex")


def test_before_noun_rows_follow_the_file_s_function_words(tmp_path):
    rules = RewriteRules.load(
        write_rules(
            tmp_path,
            (
                "values: [a, b]\n"
                "forms:\n"
                "  - {a: x, b: y, when: before_noun}\n"
                "  - {a: x, b: z}\n"
                "  - {a: w, b: y}\n"
                "function_words: [The]\n"
            ),
        ),
        factor="f",
    )
    assert rules.rewrite("x cat, x the cat, x 3, x.", source="a", target="b").rewritten.text == (
        "y cat, z the cat, y 3, z."
    )
    assert rules.rewrite("y cat, y. z", source="b", target="a").rewritten.text == "x cat, w. x"


# Pieces that fuse into words, phrases split by odd whitespace, near-misses and case variants.
_SEX_PIECES = [
    "she",
    "She",
    "SHE",
    "her",
    "Her",
    "HER",
    "hers",
    "herself",
    "he",
    "He",
    "HE",
    "his",
    "His",
    "him",
    "himself",
    "woman",
    "Woman",
    "man",
    "men",
    "women",
    "girl",
    "boys",
    "female",
    "Male",
    "lady",
    "Mrs.",
    "Mr.",
    "Mr",
    "Ms",
    "Ms.",
    "Miss",
    "miss",
    "MS",
    "Mary",
    "John",
    "mary",
    "HER-2",
    "'s",
    "the",
    "arm",
    "to",
    "results",
    "own",
]
_INSURANCE_PIECES = [
    "private",
    "Private",
    "insurance",
    "INSURANCE",
    "privately insured",
    "Medicaid",
    "on",
    "On",
    "no",
    "No",
    "uninsured",
    "Uninsured",
    "MEDICAID",
    "medicaid",
]
_GLUE = [" ", "  ", "\n", "\t", ".", ",", "-", "'", ":", "! ", "", "x", "s", "3"]


def documents(pieces: list[str]) -> st.SearchStrategy[str]:
    piece = st.one_of(
        st.sampled_from(pieces),
        st.sampled_from(_GLUE),
        st.text(alphabet="aehimnorsSHMW .,'-\n", max_size=6),
    )
    return st.lists(piece, max_size=30).map("".join)


def spans_in_order(text: RenderedText, factor: str) -> bool:
    spans = text.spans[factor]
    return all(a < b <= c < d for (a, b), (c, d) in pairwise(spans)) and all(
        0 <= a < b <= len(text.text) for a, b in spans
    )


def outside(text: RenderedText, factor: str) -> list[str]:
    edges = [0, *(edge for span in text.spans[factor] for edge in span), len(text.text)]
    return [text.text[edges[i] : edges[i + 1]] for i in range(0, len(edges), 2)]


def spellings(form: str) -> set[str]:
    """The spellings the module docstring promises for a form."""
    if form != form.lower():
        return {form}
    words = form.split()
    return {form, form[0].upper() + form[1:], " ".join(w[0].upper() + w[1:] for w in words), form.upper()}


def reference_locate(rules: RewriteRules, text: str) -> dict[str, tuple[tuple[int, int], ...]]:
    """locate() as the docstring states it: one plain alternative per spelling, longest first."""
    value_of = {spelling: value for row in rules.forms for value in rules.values for spelling in spellings(row[value])}
    alternatives = [
        (r"(?<![\w-])" if spelling[0].isalnum() else "")
        + r"\s+".join(map(re.escape, spelling.split()))
        + (r"(?![\w-])" if spelling[-1].isalnum() else "")
        for spelling in sorted(value_of, key=len, reverse=True)
    ]
    found: dict[str, list[tuple[int, int]]] = {value: [] for value in rules.values}
    for match in re.finditer("|".join(alternatives), text):
        found[value_of[" ".join(match.group().split())]].append(match.span())
    return {value: tuple(spans) for value, spans in found.items()}


def check_every_direction(rules: RewriteRules, text: str) -> None:
    """The property: a rewrite changes only its recorded spans, or is refused for a reason."""
    located = rules.locate(text)
    assert located == reference_locate(rules, text)
    for source, target in product(rules.values, repeat=2):
        try:
            rewrite = rules.rewrite(text, source=source, target=target)
        except RewriteError as error:
            assert located[source] == ()
            others = any(located[value] for value in rules.values if value != source)
            assert error.reason == ("value_mismatch" if others else "not_located")
            continue
        original, rewritten = rewrite.original, rewrite.rewritten
        assert original.text == text and original.spans[rules.factor] == located[source]
        assert spans_in_order(original, rules.factor) and spans_in_order(rewritten, rules.factor)
        assert outside(original, rules.factor) == outside(rewritten, rules.factor)
        target_forms = {" ".join(row[target].lower().split()) for row in rules.forms}
        inserted = {" ".join(rewritten.text[a:b].lower().split()) for a, b in rewritten.spans[rules.factor]}
        assert inserted <= target_forms
        if source != target:
            assert rules.locate(rewritten.text)[source] == ()


@settings(max_examples=400, deadline=None)
@given(documents(_SEX_PIECES))
def test_builtin_sex_changes_no_character_outside_the_recorded_spans(text):
    check_every_direction(SEX, text)


@settings(max_examples=200, deadline=None)
@given(text=documents(_INSURANCE_PIECES))
def test_rule_files_change_no_character_outside_the_recorded_spans(insurance, text):
    check_every_direction(insurance, text)


def shared_template(rewrite: Rewrite) -> Template:
    """The text both sides share, with a slot at each recorded span (as a run builds it)."""
    pieces = outside(rewrite.original, rewrite.factor)
    escaped = [piece.replace("{", "{{").replace("}", "}}") for piece in pieces]
    return Template.parse(f"{{{rewrite.factor}}}".join(escaped))


@pytest.mark.parametrize("tokenizer_name", ["bpe_tokenizer", "minilm_tokenizer"])
def test_a_rewrite_aligns_as_two_renders_of_one_template(tokenizer_name, request):
    tokenizer = request.getfixturevalue(tokenizer_name)
    rewrite = SEX.rewrite(
        "She {says} her arm hurts; she is a woman. Refer for CT? Answer:", source="female", target="male"
    )
    pair = align(rewrite.rewritten, rewrite.original, shared_template(rewrite), tokenizer, treatment="sex")
    destination = tokenizer(rewrite.rewritten.text)["input_ids"]
    source = tokenizer(rewrite.original.text)["input_ids"]
    factor = pair.positions["factor"]
    words = list(zip(rewrite.rewritten.token_spans(tokenizer)["sex"], rewrite.original.token_spans(tokenizer)["sex"]))
    assert len(words) == 4

    def inside(d: int, s: int, word: tuple[tuple[int, int], tuple[int, int]]) -> bool:
        return d in range(*word[0]) and s in range(*word[1])

    # every factor position pairs tokens of one replaced word, and every word is reached
    assert all(any(inside(d, s, word) for word in words) for d, s in factor)
    assert all(any(inside(d, s, word) for d, s in factor) for word in words)
    literal = [(d, s) for d, s in pair.positions["all"] if (d, s) not in factor]
    assert literal and all(destination[d] == source[s] for d, s in literal)
    assert pair.positions["last"] in (((len(destination) - 1, len(source) - 1),), ((0, 0),))


def test_patching_a_rewritten_pair_at_the_last_residual_gives_the_source_outcome(gpt2):
    text = "Patient: 67 year old woman with her own insurance. Refer for CT? Answer:"
    rewrite = SEX.rewrite(text, source="female", target="male")
    pair = align(rewrite.rewritten, rewrite.original, shared_template(rewrite), gpt2.tokenizer, treatment="sex")
    last = Site("resid_post", architecture_of(gpt2.model).n_layers - 1)
    result = patch_effects(gpt2, LogitDiff(" yes", " no"), [pair], [last], ["last", "factor"])
    patched = result.patched.set_index("position")["outcome"]
    np.testing.assert_allclose(patched["last"], result.source[0], atol=1e-5, rtol=0)
    assert abs(result.source[0] - result.destination[0]) > 1e-4


def test_carry_moves_other_factors_spans_past_the_rewrite() -> None:
    rules = RewriteRules.load("builtin:sex", factor="sex")
    text = "Mrs. Smith says she has private insurance and her mother is here."
    start = text.index("private insurance")
    rewrite = rules.rewrite(text, source="female", target="male")
    spans = rewrite.carry(
        {"insurance": ((start, start + len("private insurance")),), "sex": rewrite.original.spans["sex"]}
    )
    ((moved_start, moved_end),) = spans["insurance"]
    assert rewrite.rewritten.text[moved_start:moved_end] == "private insurance"
    assert spans["sex"] == rewrite.rewritten.spans["sex"]
    assert [rewrite.rewritten.text[a:b] for a, b in spans["sex"]] == ["Mr.", "he", "his"]


def test_carry_refuses_a_span_overlapping_a_replaced_form() -> None:
    rewrite = RewriteRules.load("builtin:sex", factor="sex").rewrite("She is here.", source="female", target="male")
    with pytest.raises(RewriteError, match=r"overlaps the sex form at \[0, 3\)"):
        rewrite.carry({"other": ((1, 5),)})
