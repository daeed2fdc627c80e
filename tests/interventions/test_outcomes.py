"""Outcome readers against plain unpadded forwards of tiny models."""

import numpy as np
import pytest
import torch

from interventions import (
    AnswerProb,
    AnswerTokenError,
    ChoiceProb,
    ClassLogit,
    ClassProb,
    ContinuationLogProb,
    ExpectedValue,
    InterventionError,
    LogitDiff,
    ModelAdapter,
    ModelSpec,
    evaluate_outcomes,
)

PROMPTS = [
    "Refer for CT? Answer:",
    "Patient: 67 year old female with private insurance. Refer for CT? Answer:",
    "Patient: 24 year old male. Answer:",
]


def plain_logits(adapter, text: str) -> torch.Tensor:
    """Logits of one unpadded forward over `text` (special tokens added, as in evaluation)."""
    ids = adapter.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return adapter.model(input_ids=ids).logits[0]


def token_id(adapter, answer: str) -> int:
    (only,) = adapter.tokenizer(answer, add_special_tokens=False)["input_ids"]
    return only


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_logit_diff_in_a_padded_batch_equals_unpadded_forwards(model, request):
    adapter = request.getfixturevalue(model)
    lengths = {len(adapter.tokenizer(text)["input_ids"]) for text in PROMPTS}
    assert len(lengths) == len(PROMPTS)  # one batch really mixes lengths
    values = evaluate_outcomes(adapter, PROMPTS, LogitDiff(" yes", " no"))
    positive, negative = token_id(adapter, " yes"), token_id(adapter, " no")
    expected = [
        (logits[-1, positive] - logits[-1, negative]).item()
        for logits in (plain_logits(adapter, text) for text in PROMPTS)
    ]
    assert values.dtype == np.float64
    np.testing.assert_allclose(values, expected, atol=1e-5, rtol=0)
    assert np.ptp(values) > 1e-2  # the texts are told apart


def test_answer_prob_is_a_softmax_over_the_answers(gpt2):
    answers = {"yes": " yes", "no": " no", "private": " private"}
    probabilities = np.stack([evaluate_outcomes(gpt2, PROMPTS, AnswerProb(answers, name)) for name in answers])
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-6)
    ids = [token_id(gpt2, answer) for answer in answers.values()]
    expected = torch.stack([torch.softmax(plain_logits(gpt2, text)[-1, ids], dim=-1) for text in PROMPTS], dim=1)
    np.testing.assert_allclose(probabilities, expected.numpy(), atol=1e-6)


@pytest.mark.parametrize("continuation, n_tokens", [(" yes", 1), (" maybe", 6)])
def test_continuation_log_prob_sums_log_softmax_over_its_tokens(gpt2, continuation, n_tokens):
    targets = gpt2.tokenizer(continuation, add_special_tokens=False)["input_ids"]
    assert len(targets) == n_tokens
    values = evaluate_outcomes(gpt2, PROMPTS, ContinuationLogProb(continuation))
    for text, value in zip(PROMPTS, values):
        prompt = gpt2.tokenizer(text)["input_ids"]
        with torch.inference_mode():
            logits = gpt2.model(input_ids=torch.tensor([prompt + targets])).logits[0]
        log_probs = torch.log_softmax(logits, dim=-1)
        expected = sum(log_probs[len(prompt) - 1 + offset, target].item() for offset, target in enumerate(targets))
        assert value == pytest.approx(expected, abs=1e-5)


def test_multi_token_answer_is_rejected_before_any_forward(gpt2, count_rows):
    rows = count_rows(gpt2)
    with pytest.raises(AnswerTokenError, match=r"answer ' maybe' is 6 tokens \['Ġ', 'm', 'a'"):
        evaluate_outcomes(gpt2, PROMPTS, LogitDiff(" yes", " maybe"))
    with pytest.raises(AnswerTokenError, match="answer ' maybe'"):
        evaluate_outcomes(gpt2, PROMPTS, AnswerProb({"yes": " yes", "maybe": " maybe"}, "yes"))
    assert rows == []


def test_identical_texts_run_once_and_get_equal_values(gpt2, count_rows):
    texts = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[2], PROMPTS[1], PROMPTS[0]]
    rows = count_rows(gpt2)
    finished = []
    values = evaluate_outcomes(gpt2, texts, LogitDiff(" yes", " no"), progress=finished.append)
    assert sum(rows) == 3
    assert sum(finished) == 3
    assert values[0] == values[2] == values[5] and values[1] == values[4]


def test_batch_size_changes_nothing_and_progress_counts_distinct_texts(gpt2):
    texts = [f"Patient: {age} year old. Answer:" for age in range(20, 40)] * 2
    outcome = LogitDiff(" yes", " no")
    finished: dict[int, list[int]] = {1: [], 7: []}
    one, seven = (
        evaluate_outcomes(gpt2, texts, outcome, batch_size=size, progress=finished[size].append) for size in (1, 7)
    )
    np.testing.assert_allclose(one, seven, atol=1e-5, rtol=0)
    assert finished == {1: [1] * 20, 7: [7, 7, 6]}


def test_classifier_outcomes_match_a_plain_forward(classifier):
    texts = ["67 year old with Medicaid insurance", "24 year old", "no insurance at all, aged 31"]
    probabilities = evaluate_outcomes(classifier, texts, ClassProb("yes"))
    logits = torch.stack([plain_logits(classifier, text) for text in texts])
    np.testing.assert_allclose(probabilities, torch.softmax(logits, dim=-1)[:, 1].numpy(), atol=1e-6)
    np.testing.assert_allclose(evaluate_outcomes(classifier, texts, ClassProb(1)), probabilities, atol=1e-12)
    np.testing.assert_allclose(evaluate_outcomes(classifier, texts, ClassLogit(0)), logits[:, 0].numpy(), atol=1e-5)


@pytest.mark.parametrize("label", ["maybe", 2, -1])
def test_unknown_class_label_lists_the_labels(classifier, label):
    with pytest.raises(InterventionError, match=r"unknown label .* labels are \['no', 'yes'\]"):
        evaluate_outcomes(classifier, ["text"], ClassLogit(label))


@pytest.mark.parametrize(
    "model, outcome, message",
    [
        ("classifier", LogitDiff(" yes", " no"), "LogitDiff needs a causal-lm model"),
        ("classifier", ContinuationLogProb(" yes"), "use ClassProb, ClassLogit or ExpectedValue without options"),
        ("gpt2", ClassProb("yes"), "ClassProb needs a sequence-classifier model"),
    ],
)
def test_outcome_on_the_wrong_task_is_rejected(model, outcome, message, request):
    with pytest.raises(InterventionError, match=message):
        evaluate_outcomes(request.getfixturevalue(model), ["text"], outcome)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: LogitDiff(" yes", " yes"), "answers are both ' yes'"),
        (lambda: AnswerProb({"yes": " yes"}, "yes"), "at least two answers"),
        (lambda: AnswerProb({"yes": " yes", "no": " no"}, "maybe"), r"names are \['yes', 'no'\]"),
        (lambda: ContinuationLogProb(""), "continuation is empty"),
    ],
)
def test_outcome_specs_validate_themselves(build, message):
    with pytest.raises(InterventionError, match=message):
        build()


def test_evaluate_outcomes_rejects_bad_arguments_and_accepts_no_texts(gpt2):
    outcome = LogitDiff(" yes", " no")
    with pytest.raises(InterventionError, match="got one string; wrap it in a list"):
        evaluate_outcomes(gpt2, PROMPTS[0], outcome)
    with pytest.raises(InterventionError, match="outcome must be LogitDiff, .* got 'logit_diff'"):
        evaluate_outcomes(gpt2, PROMPTS, "logit_diff")
    with pytest.raises(InterventionError, match="batch_size must be at least 1, got 0"):
        evaluate_outcomes(gpt2, PROMPTS, outcome, batch_size=0)
    with pytest.raises(InterventionError, match="has 65 tokens but the model takes at most 64"):
        evaluate_outcomes(gpt2, [" yes" * 64], outcome)
    empty = evaluate_outcomes(gpt2, [], outcome)
    assert empty.shape == (0,) and empty.dtype == np.float64


def capture_logits(adapter) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], object]:
    """(logits, attention mask) of every forward of the model, as the model returned them."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def keep(module, args, kwargs, output) -> None:
        seen.append((output.logits.detach().clone(), kwargs["attention_mask"]))

    return seen, adapter.model.register_forward_hook(keep, with_kwargs=True)


def test_half_precision_causal_outcomes_are_computed_in_float32(gpt2_folder):
    adapter = ModelAdapter.load(ModelSpec(str(gpt2_folder), device="cpu", dtype="bfloat16"))
    answers = {"yes": " yes", "no": " no", "private": " private"}
    outcomes = {
        "gap": LogitDiff(" yes", " no"),
        "answer": AnswerProb(answers, "no"),
        "choice": ChoiceProb({"yes": [" yes", " Refer"], "no": [" no"]}, "yes"),
        "expected": ExpectedValue({"yes": 1.0, "no": -3.0}, options={"yes": [" yes", " Refer"], "no": [" no"]}),
        "continuation": ContinuationLogProb(" yes it"),
    }
    ids = {name: token_id(adapter, answer) for name, answer in answers.items()} | {"refer": token_id(adapter, " Refer")}
    prompts = sorted(PROMPTS, key=lambda text: len(adapter.tokenizer(text)["input_ids"]))  # in the batch's order
    found, references, in_bfloat16 = {}, {}, {}
    for name, outcome in outcomes.items():
        seen, handle = capture_logits(adapter)
        try:
            found[name] = evaluate_outcomes(adapter, prompts, outcome, share_prefix=False)
        finally:
            handle.remove()
        ((logits, mask),) = seen  # one forward over the three prompts
        assert logits.dtype == torch.bfloat16
        references[name], in_bfloat16[name] = (
            reference(name, logits.to(dtype), mask, ids, adapter) for dtype in (torch.float32, torch.bfloat16)
        )
    for name in outcomes:
        np.testing.assert_allclose(found[name], references[name], atol=1e-6, rtol=1e-6)
    # Computed in bfloat16 instead, the probabilities would be off by far more.
    assert max(np.abs(in_bfloat16[name] - found[name]).max() for name in ("answer", "choice", "expected")) > 1e-4


def reference(name: str, logits: torch.Tensor, mask: torch.Tensor, ids: dict[str, int], adapter) -> np.ndarray:
    """Each outcome computed by hand from one batch's logits, in the logits' own dtype."""
    rows = torch.arange(len(logits))
    last = logits[rows, mask.sum(dim=1) - 1]
    if name == "gap":
        value = last[:, ids["yes"]] - last[:, ids["no"]]
    elif name == "answer":
        value = torch.softmax(last[:, [ids["yes"], ids["no"], ids["private"]]], dim=-1)[:, 1]
    elif name in ("choice", "expected"):
        probabilities = torch.softmax(last, dim=-1)
        yes = probabilities[:, ids["yes"]] + probabilities[:, ids["refer"]]
        share = yes / (yes + probabilities[:, ids["no"]])
        value = share if name == "choice" else share - 3.0 * (1 - share)
    else:
        continuation = adapter.tokenizer(" yes it", add_special_tokens=False)["input_ids"]
        ends = mask.sum(dim=1) - 1
        log_probs = torch.log_softmax(logits, dim=-1)
        value = sum(log_probs[rows, ends - len(continuation) + k, token] for k, token in enumerate(continuation))
    return value.double().numpy()


def test_half_precision_classifier_outcomes_are_computed_in_float32(classifier_folder):
    adapter = ModelAdapter.load(
        ModelSpec(str(classifier_folder), task="sequence-classifier", device="cpu", dtype="bfloat16")
    )
    texts = ["24 year old", "no insurance at all, aged 31", "67 year old with Medicaid insurance, pain"]  # by length
    outcomes = {
        "prob": ClassProb("yes"),
        "logit": ClassLogit("no"),
        "expected": ExpectedValue({"yes": 2.0, "no": -1.0}),
    }
    for name, outcome in outcomes.items():
        seen, handle = capture_logits(adapter)
        try:
            values = evaluate_outcomes(adapter, texts, outcome)
        finally:
            handle.remove()
        ((logits, _),) = seen
        assert logits.dtype == torch.bfloat16
        upcast = logits.float()
        probabilities = torch.softmax(upcast, dim=-1)
        expected = {
            "prob": probabilities[:, 1],
            "logit": upcast[:, 0],
            "expected": 2.0 * probabilities[:, 1] - probabilities[:, 0],
        }[name]
        np.testing.assert_allclose(values, expected.double().numpy(), atol=1e-6, rtol=1e-6)
