"""evaluate_outcome_set: several outcomes from one pass over the texts, equal to one call per outcome."""

import numpy as np
import pytest
import torch

from interventions import (
    AnswerProb,
    ChoiceProb,
    ContinuationLogProb,
    ExpectedValue,
    Generation,
    InterventionError,
    LogitDiff,
    Template,
    evaluate_outcome_set,
    evaluate_outcomes,
)

TEMPLATE = Template.parse("Patient: {age} year old {sex} with {insurance} insurance. Refer for CT? Answer:")
TEXTS = [
    TEMPLATE.render({"age": age, "sex": sex, "insurance": insurance}).text
    for age, sex in [("67", "female"), ("24", "male"), ("31", "female")]
    for insurance in ("private", "no", "Medicaid")
] + ["Refer for CT? Answer:"]
TEXTS = TEXTS + TEXTS[::2]  # repeated texts, as arms repeat them
N_DISTINCT = 10
SINGLE = {"yes": [" yes"], "no": [" no"], "unsure": [" CT", " Refer"]}
# " yeah" and " No" are three tokens under the test tokenizer, " chest pain" two.
MULTI = {"yes": [" yes", " yeah"], "no": [" no", " No"], "unsure": [" CT", " chest pain"]}
NEXT_TOKEN = {
    "gap": LogitDiff(" yes", " no"),
    "answer": AnswerProb({"yes": " yes", "no": " no", "private": " private"}, "yes"),
    "choice": ChoiceProb(SINGLE, "unsure"),
    "expected": ExpectedValue({"yes": 1.0, "no": -1.0, "unsure": 0.25}, options=SINGLE),
    "refer": ChoiceProb({"refer": [" Refer", " CT"], "wait": [" no"]}, "refer"),
}
MIXED = {
    "gap": LogitDiff(" yes", " no"),
    "choice": ChoiceProb(MULTI, "yes"),
    "expected": ExpectedValue({"yes": 1.0, "no": -1.0, "unsure": 0.25}, options=MULTI),
    "continuation": ContinuationLogProb(" yes it is"),
    "again": ContinuationLogProb(" yes it is"),
}


def record_forwards(adapter):
    """(rows, width, continues a cache) of every call of the model's top-level forward."""
    calls: list[tuple[int, int, bool]] = []

    def record(module, args, kwargs, output) -> None:
        rows, width = kwargs["input_ids"].shape
        cache = kwargs.get("cache", kwargs.get("past_key_values"))  # transformers >= 5.24 names it `cache`
        calls.append((rows, width, cache is not None))

    return calls, adapter.model.register_forward_hook(record, with_kwargs=True)


def one_at_a_time(adapter, outcomes, **options):
    return {name: evaluate_outcomes(adapter, TEXTS, outcome, **options) for name, outcome in outcomes.items()}


@pytest.mark.parametrize("share_prefix", [True, False])
def test_five_next_token_outcomes_run_each_distinct_text_once(gpt2, share_prefix):
    assert len(set(TEXTS)) == N_DISTINCT
    calls, handle = record_forwards(gpt2)
    try:
        together = evaluate_outcome_set(gpt2, TEXTS, NEXT_TOKEN, batch_size=64, share_prefix=share_prefix)
    finally:
        handle.remove()
    assert len(calls) == 1 and calls[0][0] == N_DISTINCT  # one forward; each distinct text one row of it
    separate = one_at_a_time(gpt2, NEXT_TOKEN, batch_size=64, share_prefix=share_prefix)
    assert list(together) == list(NEXT_TOKEN)
    for name in NEXT_TOKEN:
        assert together[name].shape == (len(TEXTS),)
        np.testing.assert_allclose(together[name], separate[name], atol=1e-6, rtol=0)
    assert all(np.ptp(values) > 1e-3 for values in together.values())


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_multi_token_options_continue_from_the_texts_keys_and_values(model, request):
    adapter = request.getfixturevalue(model)
    outcomes = {name: MIXED[name] for name in ("gap", "choice", "expected")}
    calls, handle = record_forwards(adapter)
    try:
        together = evaluate_outcome_set(adapter, TEXTS, outcomes, batch_size=64)
    finally:
        handle.remove()
    # The texts run once (after their shared prefixes); then the three longer strings run
    # after each text's cache, fed all tokens but their last: at most two tokens.
    (main_rows, _, _), (tail_rows, tail_width, continued) = calls
    assert main_rows == N_DISTINCT
    assert (tail_rows, tail_width, continued) == (3 * N_DISTINCT, 2, True)
    separate = one_at_a_time(adapter, outcomes, batch_size=64, share_prefix=False)
    for name in outcomes:
        np.testing.assert_allclose(together[name], separate[name], atol=1e-5, rtol=0)


def test_outcomes_appending_a_continuation_share_one_more_pass(gpt2):
    calls, handle = record_forwards(gpt2)
    finished: list[int] = []
    try:
        together = evaluate_outcome_set(gpt2, TEXTS, MIXED, batch_size=64, share_prefix=False, progress=finished.append)
    finally:
        handle.remove()
    # The plain pass, its option tails after the whole texts (sharing off), then the continuation's pass.
    assert [rows for rows, _, _ in calls] == [N_DISTINCT, 3 * N_DISTINCT, N_DISTINCT]
    assert finished == [N_DISTINCT, N_DISTINCT]
    np.testing.assert_array_equal(together["continuation"], together["again"])
    separate = one_at_a_time(gpt2, MIXED, batch_size=64, share_prefix=False)
    for name in MIXED:
        np.testing.assert_allclose(together[name], separate[name], atol=1e-6, rtol=0)


def test_out_of_memory_halves_batches_of_every_pass(gpt2, monkeypatch):
    expected = evaluate_outcome_set(gpt2, TEXTS, MIXED, batch_size=8)
    forward, tried = gpt2.model.forward, []

    def failing(*args, **kwargs):
        tried.append(kwargs["input_ids"].shape[0])
        if tried[-1] > 6:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return forward(*args, **kwargs)

    monkeypatch.setattr(gpt2.model, "forward", failing)
    values = evaluate_outcome_set(gpt2, TEXTS, MIXED, batch_size=8)
    for name in MIXED:
        np.testing.assert_allclose(values[name], expected[name], atol=1e-5, rtol=0)
    # The plain pass: 8 texts fail; 4 texts fit but their 12 option tails fail; then 2 texts
    # and their 6 tails at a time. The continuation's pass starts again at 8 and fits 4.
    assert tried == [8, 4, 12] + [2, 6] * 5 + [8, 4, 4, 2]


def test_bad_outcome_sets_are_rejected_before_any_forward(gpt2, count_rows):
    rows = count_rows(gpt2)
    with pytest.raises(InterventionError, match="outcomes must be a non-empty mapping"):
        evaluate_outcome_set(gpt2, TEXTS, {})
    with pytest.raises(InterventionError, match="outcomes must be a non-empty mapping"):
        evaluate_outcome_set(gpt2, TEXTS, LogitDiff(" yes", " no"))
    generation = Generation(4, {"yes": "yes"}, target="yes")
    with pytest.raises(InterventionError, match=r"outcomes\['answer'\] must be LogitDiff, .*got Generation"):
        evaluate_outcome_set(gpt2, TEXTS, {"gap": LogitDiff(" yes", " no"), "answer": generation})
    with pytest.raises(InterventionError, match="answer ' maybe' is 6 tokens"):
        evaluate_outcome_set(gpt2, TEXTS, {"gap": LogitDiff(" yes", " no"), "bad": LogitDiff(" yes", " maybe")})
    with pytest.raises(InterventionError, match="got one string"):
        evaluate_outcome_set(gpt2, TEXTS[0], NEXT_TOKEN)
    long = " yes" * 62  # 63 tokens with the BOS token; the options' tails add 2
    with pytest.raises(InterventionError, match="has 63 tokens and 2 continuation tokens after it would pass .* 64"):
        evaluate_outcome_set(gpt2, [long], {"gap": LogitDiff(" yes", " no"), "choice": MIXED["choice"]})
    assert rows == []
    empty = evaluate_outcome_set(gpt2, [], NEXT_TOKEN)
    assert all(values.shape == (0,) and values.dtype == np.float64 for values in empty.values())
