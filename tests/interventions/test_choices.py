"""ChoiceProb and ExpectedValue against sums of token log-probabilities from plain unpadded forwards."""

import numpy as np
import pytest
import torch

from interventions import (
    AnswerProb,
    AnswerTokenError,
    ChoiceProb,
    ExpectedValue,
    InterventionError,
    Template,
    evaluate_outcomes,
    model_sites,
    patch_effects,
)

TEMPLATE = Template.parse("Patient: {age} year old {sex} with {insurance} insurance. Refer for CT? Answer:")
TEXTS = [
    TEMPLATE.render({"age": age, "sex": sex, "insurance": insurance}).text
    for age, sex, insurance in [("67", "female", "private"), ("67", "female", "Medicaid"), ("24", "male", "no")]
] + ["Refer for CT? Answer:"]
# " yes", " no", " CT" are one token under the test tokenizer; " chest pain" two; " yeah", " No" three.
OPTIONS = {"yes": [" yes", " yeah"], "no": [" no", " No"], "unsure": [" CT", " chest pain"]}
LENGTHS = {" yes": 1, " yeah": 3, " no": 1, " No": 3, " CT": 1, " chest pain": 2}


def string_log_prob(adapter, text: str, string: str) -> float:
    """log p(string | text): its tokens' log-probabilities summed over one unpadded forward."""
    prompt = adapter.tokenizer(text)["input_ids"]
    continuation = adapter.tokenizer(string, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = adapter.model(input_ids=torch.tensor([prompt + continuation])).logits[0].double()
    log_probs = torch.log_softmax(logits, dim=-1)
    return sum(log_probs[len(prompt) - 1 + k, token].item() for k, token in enumerate(continuation))


def option_probabilities(adapter, text: str, options) -> dict[str, float]:
    """Each option's probability: its strings' probabilities summed, normalised over options."""
    totals = {
        name: sum(np.exp(string_log_prob(adapter, text, s)) for s in strings) for name, strings in options.items()
    }
    return {name: total / sum(totals.values()) for name, total in totals.items()}


def test_option_strings_have_the_token_lengths_the_tests_rely_on(gpt2):
    found = {s: len(gpt2.tokenizer(s, add_special_tokens=False)["input_ids"]) for s in LENGTHS}
    assert found == LENGTHS


@pytest.mark.parametrize("model", ["gpt2", "llama", "neox", "mistral"])
@pytest.mark.parametrize("share_prefix", [True, False])
def test_choice_prob_of_multi_token_options_equals_hand_computation(model, share_prefix, request):
    adapter = request.getfixturevalue(model)
    expected = [option_probabilities(adapter, text, OPTIONS) for text in TEXTS]
    for target in OPTIONS:
        values = evaluate_outcomes(adapter, TEXTS, ChoiceProb(OPTIONS, target), share_prefix=share_prefix)
        np.testing.assert_allclose(values, [found[target] for found in expected], atol=1e-5, rtol=0)
    assert np.ptp([found["yes"] for found in expected]) > 1e-3  # the texts are told apart


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_expected_value_over_options_equals_hand_computation(model, request):
    adapter = request.getfixturevalue(model)
    values = {"yes": 2.0, "no": -1.0, "unsure": 0.5}
    found = evaluate_outcomes(adapter, TEXTS, ExpectedValue(values, options=OPTIONS), batch_size=3)
    expected = []
    for text in TEXTS:
        probabilities = option_probabilities(adapter, text, OPTIONS)
        expected.append(sum(values[name] * probabilities[name] for name in OPTIONS))
    np.testing.assert_allclose(found, expected, atol=1e-5, rtol=0)


def test_single_token_choices_equal_answer_prob_and_patch_like_it(gpt2, patch_case):
    answers = {"yes": " yes", "no": " no", "private": " private"}
    choice = ChoiceProb({name: [answer] for name, answer in answers.items()}, "no")
    np.testing.assert_allclose(
        evaluate_outcomes(gpt2, TEXTS, choice), evaluate_outcomes(gpt2, TEXTS, AnswerProb(answers, "no")), atol=1e-6
    )
    pairs, sites = patch_case.pairs(gpt2), model_sites(gpt2, ["resid_pre"])
    patched = patch_effects(gpt2, choice, pairs, sites, ["last"])
    reference = patch_effects(gpt2, AnswerProb(answers, "no"), pairs, sites, ["last"])
    np.testing.assert_allclose(patched.patched["outcome"], reference.patched["outcome"], atol=1e-6)


def test_multi_token_options_cannot_be_patched(gpt2, patch_case):
    with pytest.raises(AnswerTokenError, match=r"option strings \[' yeah', ' No', ' chest pain'\] are several tokens"):
        patch_effects(
            gpt2, ChoiceProb(OPTIONS, "yes"), patch_case.pairs(gpt2), model_sites(gpt2, ["resid_pre"]), ["last"]
        )


def test_expected_value_over_labels_is_a_softmax_over_the_named_labels(classifier):
    texts = ["67 year old with Medicaid insurance", "24 year old", "no insurance at all, aged 31"]
    with torch.inference_mode():
        logits = torch.cat(
            [classifier.model(**classifier.tokenizer(text, return_tensors="pt")).logits for text in texts]
        )
    probabilities = torch.softmax(logits.double(), dim=-1).numpy()
    found = evaluate_outcomes(classifier, texts, ExpectedValue({"yes": 3.0, "no": -2.0}))
    np.testing.assert_allclose(found, 3.0 * probabilities[:, 1] - 2.0 * probabilities[:, 0], atol=1e-6)
    by_index = evaluate_outcomes(classifier, texts, ExpectedValue({1: 3.0, 0: -2.0}))
    np.testing.assert_allclose(by_index, found, atol=1e-12)


def test_a_three_label_classifier_renormalises_over_the_labels_named(tmp_path_factory, minilm_tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    from interventions import ModelAdapter, ModelSpec

    config = BertConfig(
        vocab_size=len(minilm_tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        id2label={0: "low", 1: "mid", 2: "high"},
    )
    folder = tmp_path_factory.mktemp("three")
    with torch.random.fork_rng():
        torch.manual_seed(1)
        BertForSequenceClassification(config).save_pretrained(folder)
    minilm_tokenizer.save_pretrained(folder)
    adapter = ModelAdapter.load(ModelSpec(str(folder), task="sequence-classifier", device="cpu"))
    texts = ["a short text", "another, longer text about insurance"]
    with torch.inference_mode():
        logits = torch.cat([adapter.model(**adapter.tokenizer(t, return_tensors="pt")).logits for t in texts]).double()
    two = torch.softmax(logits[:, [0, 2]], dim=-1).numpy()
    found = evaluate_outcomes(adapter, texts, ExpectedValue({"low": 0.0, "high": 1.0}))
    np.testing.assert_allclose(found, two[:, 1], atol=1e-6)
    everything = torch.softmax(logits, dim=-1).numpy() @ np.array([0.0, 0.5, 1.0])
    np.testing.assert_allclose(
        evaluate_outcomes(adapter, texts, ExpectedValue({"low": 0.0, "mid": 0.5, "high": 1.0})), everything, atol=1e-6
    )


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ChoiceProb({"yes": [" yes"]}, "yes"), "at least two option names"),
        (lambda: ChoiceProb({"yes": " yes", "no": [" no"]}, "yes"), "option 'yes' must list its strings"),
        (lambda: ChoiceProb({"yes": [" yes"], "no": []}, "yes"), "option 'no' must list its strings"),
        (lambda: ChoiceProb({"yes": [" yes", ""], "no": [" no"]}, "yes"), "option 'yes' has an empty"),
        (lambda: ChoiceProb({"yes": [" yes"], "no": [" yes"]}, "yes"), r"strings \[' yes'\] appear more than once"),
        (lambda: ChoiceProb({"yes": [" yes"], "no": [" no"]}, "maybe"), r"option names are \['yes', 'no'\]"),
        (lambda: ExpectedValue({"yes": 1.0}), "at least two options or labels"),
        (lambda: ExpectedValue({"yes": 1.0, "no": "0"}), "value of 'no' must be a finite number, got '0'"),
        (lambda: ExpectedValue({"yes": 1.0, "no": float("nan")}), "value of 'no' must be a finite number"),
        (
            lambda: ExpectedValue({"yes": 1.0, "no": 0.0}, options={"yes": [" yes"], "maybe": [" no"]}),
            r"values name \['yes', 'no'\] but options name \['yes', 'maybe'\]",
        ),
    ],
)
def test_option_specs_validate_themselves(build, message):
    with pytest.raises(InterventionError, match=message):
        build()


def test_strings_that_begin_one_another_are_rejected_before_any_forward(gpt2, count_rows):
    rows = count_rows(gpt2)
    overlapping = ChoiceProb({"yes": [" yes"], "no": [" no", " noo"]}, "yes")  # " noo" is " no" + "o"
    with pytest.raises(InterventionError, match="option strings ' no' and ' noo' overlap"):
        evaluate_outcomes(gpt2, TEXTS, overlapping)
    assert rows == []


@pytest.mark.parametrize(
    "model, outcome, message",
    [
        ("classifier", ChoiceProb(OPTIONS, "yes"), "ChoiceProb needs a causal-lm model"),
        (
            "classifier",
            ExpectedValue({"yes": 1.0, "no": 0.0}, options={"yes": [" yes"], "no": [" no"]}),
            "ExpectedValue needs a causal-lm",
        ),
        ("gpt2", ExpectedValue({"yes": 1.0, "no": 0.0}), "ExpectedValue needs a sequence-classifier model"),
        ("classifier", ExpectedValue({"yes": 1.0, 1: 0.0}), "name one label twice"),
        ("classifier", ExpectedValue({"yes": 1.0, "maybe": 0.0}), "unknown label 'maybe'"),
    ],
)
def test_option_outcomes_check_the_model(model, outcome, message, request):
    with pytest.raises(InterventionError, match=message):
        evaluate_outcomes(request.getfixturevalue(model), TEXTS[:1], outcome)
