"""The shipped builtin:sex lexicon against a table of sentences rewritten by hand."""

import pytest

from interventions import RewriteRules

SEX = RewriteRules.load("builtin:sex", factor="sex")

FEMALE_TO_MALE = [
    # pronouns, and case kept as lower, Capitalised and UPPER
    ("She is a 45 year old woman.", "He is a 45 year old man."),
    ("SHE REPORTS CHEST PAIN.", "HE REPORTS CHEST PAIN."),
    ("She'll return on Monday.", "He'll return on Monday."),
    ("Shelby said she felt sheepish.", "Shelby said he felt sheepish."),
    ("She hurt herself at work.", "He hurt himself at work."),
    ("The book is hers.", "The book is his."),
    ("There she was, in her car.", "There he was, in his car."),
    # the her ambiguity: a determiner before a noun, an object otherwise
    ("Her arm is swollen.", "His arm is swollen."),
    ("Her left knee hurts, and her own doctor agrees.", "His left knee hurts, and his own doctor agrees."),
    ("We examined her.", "We examined him."),
    ("We gave her the results.", "We gave him the results."),
    ("The nurse told her to rest.", "The nurse told him to rest."),
    ("Seen with her, then discharged.", "Seen with him, then discharged."),
    ("Let her go home.", "Let him go home."),
    ("Her\ncough persists.", "His\ncough persists."),
    ("We saw her\n\nPlan: rest.", "We saw him\n\nPlan: rest."),
    ("HER PAIN WOKE HER AT NIGHT.", "HIS PAIN WOKE HIM AT NIGHT."),
    ("Herbal tea helped her.", "Herbal tea helped him."),
    # nouns and possessives
    ("The woman's pain began yesterday.", "The man's pain began yesterday."),
    ("The women's ward was full.", "The men's ward was full."),
    ("Woman, 62, with dyspnea.", "Man, 62, with dyspnea."),
    ("The Woman Was Seen.", "The Man Was Seen."),
    ("The patient is a female smoker.", "The patient is a male smoker."),
    ("Females over 50 are screened.", "Males over 50 are screened."),
    ("A girl of nine with fever.", "A boy of nine with fever."),
    ("The lady in bed 4 says she's dizzy.", "The gentleman in bed 4 says he's dizzy."),
    # titles: capitalised forms match only as written
    ("Mrs. Smith was seen today.", "Mr. Smith was seen today."),
    ("Ms. Lee declined.", "Mr. Lee declined."),
    ("Miss Jones did not miss a dose.", "Mr. Jones did not miss a dose."),
    ("Mrs Patel is stable; MS was ruled out.", "Mr Patel is stable; MS was ruled out."),
    # names; relatives and hyphenated words are left alone
    ("Mary was admitted; Mary's husband waited.", "John was admitted; John's husband waited."),
    ("Jennifer and her mother arrived.", "Michael and his mother arrived."),
    ("Elizabeth Taylor, a woman of 70.", "William Taylor, a man of 70."),
    ("HER-2 negative; she is a woman.", "HER-2 negative; he is a man."),
    # forms of the other value are not the document's: they stay
    ("She told the doctor he was wrong.", "He told the doctor he was wrong."),
]

MALE_TO_FEMALE = [
    ("He is a 50 year old man.", "She is a 50 year old woman."),
    ("HE GAVE HIM HIS PILLS.", "SHE GAVE HER HER PILLS."),
    ("The choice was his.", "The choice was hers."),
    ("His to decide.", "Hers to decide."),
    ("His wife drove him in.", "Her wife drove her in."),
    ("Mr. Brown shaved himself.", "Ms. Brown shaved herself."),
    ("Mr Brown is here.", "Ms Brown is here."),
    ("John and his brother.", "Mary and her brother."),
    ("The boys' father called.", "The girls' father called."),
    ("A gentleman, aged 80, says he's fine.", "A lady, aged 80, says she's fine."),
    ("The men's clinic.", "The women's clinic."),
    ("Michael told the nurse he felt better.", "Jennifer told the nurse she felt better."),
    ("The MAN was agitated.", "The WOMAN was agitated."),
    ("Male, 45, seen in clinic.", "Female, 45, seen in clinic."),
    ("Manchester resident; the man walks daily.", "Manchester resident; the woman walks daily."),
]

CASES = [(text, "female", "male", expected) for text, expected in FEMALE_TO_MALE] + [
    (text, "male", "female", expected) for text, expected in MALE_TO_FEMALE
]


def test_the_table_has_at_least_forty_sentences():
    assert len(CASES) >= 40


@pytest.mark.parametrize(("text", "source", "target", "expected"), CASES)
def test_builtin_sex_rewrites_each_sentence_as_written_by_hand(text, source, target, expected):
    rewrite = SEX.rewrite(text, source=source, target=target)
    assert rewrite.rewritten.text == expected
    assert (rewrite.factor, rewrite.source, rewrite.target) == ("sex", source, target)
    before, after = rewrite.original.spans["sex"], rewrite.rewritten.spans["sex"]
    assert before == SEX.locate(text)[source]
    assert len(after) == len(before)
    assert SEX.locate(expected)[source] == ()


def test_spans_mark_the_replaced_and_inserted_words_in_order():
    rewrite = SEX.rewrite("Mrs. Li said her arm hurt her.", source="female", target="male")
    original, rewritten = rewrite.original, rewrite.rewritten
    assert [original.text[a:b] for a, b in original.spans["sex"]] == ["Mrs.", "her", "her"]
    assert [rewritten.text[a:b] for a, b in rewritten.spans["sex"]] == ["Mr.", "his", "him"]


def test_a_value_rewritten_to_itself_is_the_same_text_with_its_spans():
    rewrite = SEX.rewrite("She saw her GP.", source="female", target="female")
    assert rewrite.rewritten == rewrite.original
    assert rewrite.original.spans["sex"] == ((0, 3), (8, 11))


def test_locate_reports_each_value_of_the_lexicon():
    assert SEX.values == ("female", "male")
    assert SEX.locate("He met Mrs. Ng and her son.") == {
        "female": ((7, 11), (19, 22)),
        "male": ((0, 2),),
    }
