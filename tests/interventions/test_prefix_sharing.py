"""Prefix sharing in evaluate_outcomes: the same outcomes as full forwards, from fewer tokens."""

import numpy as np
import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from interventions import (
    AnswerProb,
    ContinuationLogProb,
    LogitDiff,
    ModelAdapter,
    ModelSpec,
    Template,
    evaluate_outcomes,
)
from interventions._prefix import _MIN_PREFIX, can_share, common_prefix, group_prefixes

TEMPLATE = Template.parse(
    "Patient: {age} year old {sex} with {insurance} insurance. Symptom: {symptom}. Refer for CT? Answer:"
)
UNITS = [
    {"age": age, "sex": sex, "symptom": symptom}
    for age, sex, symptom in [
        ("24", "male", "headache"),
        ("67", "female", "cough"),
        ("31", "female", "chest pain"),
        ("74", "male", "headache"),
        ("24", "female", "cough"),
    ]
]
INSURANCE = ["private", "no", "Medicaid"]
OUTCOMES = [
    LogitDiff(" yes", " no"),
    AnswerProb({"yes": " yes", "no": " no", "maybe": " private"}, "no"),
    ContinuationLogProb(" yes it is"),
]


def arm_texts() -> list[str]:
    """Every unit in every insurance arm: the arms of a unit share all tokens before it."""
    return [TEMPLATE.render({**unit, "insurance": value}).text for unit in UNITS for value in INSURANCE]


def count_tokens(adapter):
    """Record (rows, positions) of every forward through the model's base (prefixes too)."""
    shapes: list[tuple[int, int]] = []

    def record(module, args, kwargs, output) -> None:
        shapes.append(tuple((kwargs["input_ids"] if "input_ids" in kwargs else args[0]).shape))

    handle = adapter.model.base_model.register_forward_hook(record, with_kwargs=True)
    return shapes, handle


@pytest.mark.parametrize("model", ["gpt2", "llama", "neox"])
@pytest.mark.parametrize("outcome", OUTCOMES, ids=type)
@pytest.mark.parametrize("batch_size", [4, 64])
def test_shared_prefixes_give_the_outcomes_of_full_forwards(model, outcome, batch_size, request):
    adapter = request.getfixturevalue(model)
    texts = arm_texts() + ["Refer for CT? Answer:"]  # one text that shares nothing
    shapes, handle = count_tokens(adapter)
    try:
        shared = evaluate_outcomes(adapter, texts, outcome, batch_size=batch_size)
        shared_shapes = list(shapes)
        shapes.clear()
        plain = evaluate_outcomes(adapter, texts, outcome, batch_size=batch_size, share_prefix=False)
    finally:
        handle.remove()
    np.testing.assert_allclose(shared, plain, atol=1e-5, rtol=0)
    assert np.ptp(plain) > 1e-2  # the texts are told apart
    if batch_size > len(texts):  # one batch: each unit's prefix runs once, then every text
        ids = [adapter.tokenizer(text)["input_ids"] for text in texts]
        arms = len(INSURANCE)
        prefix = [
            min(common_prefix(ids[unit * arms], ids[unit * arms + arm]) for arm in (1, 2)) for unit in range(len(UNITS))
        ]
        continuation = np.array([len(row) + len(outcome._bind(adapter).suffix) for row in ids])
        continuation[: len(prefix) * arms] -= np.repeat(prefix, arms)
        assert shared_shapes == [(len(UNITS), max(prefix)), (len(texts), continuation.max())]
        assert sum(rows * width for rows, width in shared_shapes) < shapes[0][0] * shapes[0][1]


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_prefixes_of_different_lengths_share_one_batch(model, request):
    adapter = request.getfixturevalue(model)
    early = [TEMPLATE.render({**UNITS[0], "insurance": value}).text for value in INSURANCE]
    late = [
        TEMPLATE.render({**UNITS[1], "insurance": "no", "symptom": symptom}).text
        for symptom in ("cough", "chest pain", "a sore throat")
    ]
    ids = [adapter.tokenizer(text)["input_ids"] for text in early + late]
    shapes, handle = count_tokens(adapter)
    try:
        shared = evaluate_outcomes(adapter, early + late, LogitDiff(" yes", " no"))
    finally:
        handle.remove()
    prefixes = [min(common_prefix(a, b) for a in group for b in group if a != b) for group in (ids[:3], ids[3:])]
    assert prefixes[0] + 4 < prefixes[1]  # the shorter prefix is padded in the prefix batch
    assert shapes[0] == (2, prefixes[1])
    np.testing.assert_allclose(
        shared,
        evaluate_outcomes(adapter, early + late, LogitDiff(" yes", " no"), share_prefix=False),
        atol=1e-5,
        rtol=0,
    )


def test_one_group_runs_its_prefix_once_and_each_continuation_after_it(gpt2):
    texts = [TEMPLATE.render({**UNITS[0], "insurance": value}).text for value in INSURANCE]
    ids = [gpt2.tokenizer(text)["input_ids"] for text in texts]
    prefix = min(common_prefix(a, b) for a in ids for b in ids if a != b)
    assert prefix >= _MIN_PREFIX
    shapes, handle = count_tokens(gpt2)
    try:
        evaluate_outcomes(gpt2, texts, LogitDiff(" yes", " no"))
    finally:
        handle.remove()
    width = max(len(row) for row in ids) - prefix
    assert shapes == [(1, prefix), (3, width)]


def test_groups_keep_the_read_positions_out_of_the_prefix():
    base = list(range(100, 120))
    token_ids = [base + [1, 2], base + [3], base, [7] * 30, base[:5] + [9] * 10]
    groups = group_prefixes(token_ids, keep=0)
    # The third text is the shared prefix itself: its last token must stay to be read.
    assert groups.group.tolist() == [0, 0, 0, -1, -1]
    assert groups.length.tolist() == [19, 19, 19, 0, 0]
    keep_two = group_prefixes(token_ids, keep=2)
    assert keep_two.length.tolist() == [17, 17, 17, 0, 0]


def test_groups_save_the_most_tokens():
    long, short = list(range(40)), list(range(10))
    token_ids = [long + [1], long + [2], short + [50, 51], short + [60, 61]]
    groups = group_prefixes(token_ids, keep=0)
    # One group of four would save 3 x 10 tokens, two pairs 40 + 10.
    assert groups.length.tolist() == [40, 40, 10, 10]
    assert len(set(groups.group.tolist())) == 2
    # Texts in token order: a shares 9 tokens with b; b, c and d share 20. A greedy pass
    # from a would keep all four at 9 (saving 27); leaving a out saves 2 x 20.
    a, b, c, d = short[:9] + [5], long[:20] + [1], long[:20] + [2], long[:20] + [3]
    groups = group_prefixes([d, a, c, b], keep=0)
    assert groups.length.tolist() == [20, 0, 20, 20]
    assert groups.group[1] == -1 and len(set(groups.group[[0, 2, 3]])) == 1
    below = group_prefixes([short[: _MIN_PREFIX - 1] + [1], short[: _MIN_PREFIX - 1] + [2]], keep=0)
    assert below.group.tolist() == [-1, -1]


def test_order_keeps_groups_together():
    token_ids = [[5] * 12 + [1], [9] * 3, [5] * 12 + [2, 3, 4], [6] * 10 + [1], [6] * 10 + [2], [8] * 4]
    groups = group_prefixes(token_ids, keep=0)
    order = groups.order(np.array([len(ids) for ids in token_ids]))
    # Continuation widths: text 1 three tokens, group (3, 4) two, group (0, 2) four, text 5 four.
    assert order.tolist() == [3, 4, 1, 0, 2, 5]


def test_a_window_wider_than_twice_every_text_shares(tmp_path, bpe_tokenizer):
    config = MistralConfig(
        vocab_size=len(bpe_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        sliding_window=64,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        MistralForCausalLM(config).save_pretrained(tmp_path)
    bpe_tokenizer.save_pretrained(tmp_path)
    adapter = ModelAdapter.load(ModelSpec(str(tmp_path), device="cpu"))
    texts = arm_texts()
    assert can_share(adapter, 32)
    shapes, handle = count_tokens(adapter)
    try:
        shared = evaluate_outcomes(adapter, texts, LogitDiff(" yes", " no"))
    finally:
        handle.remove()
    assert len(shapes) == 2  # the prefixes, then the continuations
    np.testing.assert_allclose(
        shared,
        evaluate_outcomes(adapter, texts, LogitDiff(" yes", " no"), share_prefix=False),
        atol=1e-5,
        rtol=0,
    )


@pytest.mark.parametrize("model", ["mistral", "qwen2"])
def test_sliding_window_models_run_full_forwards(model, request):
    adapter = request.getfixturevalue(model)
    texts = arm_texts()
    assert not can_share(adapter, max(len(adapter.tokenizer(t)["input_ids"]) for t in texts))
    outcome = LogitDiff(" yes", " no")
    np.testing.assert_array_equal(
        evaluate_outcomes(adapter, texts, outcome),
        evaluate_outcomes(adapter, texts, outcome, share_prefix=False),
    )


def test_classifiers_and_duplicates_are_unaffected(gpt2, classifier, count_rows):
    texts = arm_texts()
    rows = count_rows(gpt2)
    values = evaluate_outcomes(gpt2, texts + texts[::-1], LogitDiff(" yes", " no"))
    np.testing.assert_array_equal(values[: len(texts)], values[len(texts) :][::-1])
    assert sum(rows) == len(texts)  # each distinct text continues once
    assert not can_share(classifier, 8)


def test_shared_outcomes_match_unpadded_single_forwards(llama):
    texts = arm_texts()[:6]
    values = evaluate_outcomes(llama, texts, LogitDiff(" yes", " no"))
    yes, no = (llama.tokenizer(answer, add_special_tokens=False)["input_ids"][0] for answer in (" yes", " no"))
    for text, value in zip(texts, values):
        ids = llama.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            logits = llama.model(input_ids=ids).logits[0, -1]
        assert value == pytest.approx((logits[yes] - logits[no]).item(), abs=1e-5)


def test_padding_after_a_long_prefix_stays_within_the_position_limit(gpt2):
    prompt = TEMPLATE.render({**UNITS[0], "insurance": "private"}).text
    group = [prompt + ending for ending in (" yes", " no", " yes no")]
    long = "Answer:" + " no" * 55  # shares nothing; its continuation sets the batch's width
    ids = gpt2.tokenizer([*group, long])["input_ids"]
    limit = gpt2.model.config.n_positions
    assert max(map(len, ids)) <= limit < len(ids[0]) + len(ids[3])
    outcome = LogitDiff(" yes", " no")
    np.testing.assert_allclose(
        evaluate_outcomes(gpt2, [*group, long], outcome),
        evaluate_outcomes(gpt2, [*group, long], outcome, share_prefix=False),
        atol=1e-5,
        rtol=0,
    )
