"""generate_outcomes: greedy answers equal model.generate per text, seeded samples reproduce, and
sampled values give intervals that cover a planted effect at their nominal rate."""

import math
import re
import time

import numpy as np
import pytest
import torch
from scipy import stats
from transformers import GPT2Config, GPT2LMHeadModel

from interventions import (
    Generation,
    GenerationResult,
    InterventionError,
    ModelAdapter,
    ModelSpec,
    generate_outcomes,
)

TEXTS = [
    "Refer for CT? Answer:",
    "Patient: 67 year old female with private insurance. Refer for CT? Answer:",
    "Patient: 24 year old male. Answer:",
    "Patient: 31 year old female with no insurance. Symptom: cough. Answer:",
]
# Random tiny models answer in word pieces; these patterns match some answers, several at once
# in others, and none in the rest.
PARSE = {"digit": r"\d", "vowel": r"[aeiou]", "space": r" "}


def parse_by_hand(answer: str) -> tuple[str | None, bool]:
    """The documented rule: the earliest match wins, a tie goes to the option listed first."""
    starts = {name: match.start() for name, pattern in PARSE.items() if (match := re.search(pattern, answer))}
    if not starts:
        return None, False
    return min(starts, key=lambda name: (starts[name], list(PARSE).index(name))), len(starts) > 1


def generate_alone(adapter, text: str, max_new_tokens: int) -> str:
    ids = adapter.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = adapter.model.generate(
            ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=adapter.tokenizer.pad_token_id
        )
    return adapter.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_greedy_answers_equal_generate_on_each_text_alone(model, request):
    adapter = request.getfixturevalue(model)
    generation = Generation(8, PARSE, values={"digit": 1.0, "vowel": 2.0, "space": 4.0})
    texts = TEXTS + TEXTS[:2]
    result = generate_outcomes(adapter, texts, generation, seed=0, batch_size=3)  # batches mix lengths
    expected = {text: generate_alone(adapter, text, 8) for text in TEXTS}
    assert result.answers == tuple((expected[text],) for text in texts)
    by_hand = [parse_by_hand(expected[text]) for text in texts]
    assert result.options == tuple((option,) for option, _ in by_hand)
    assert result.ambiguous.tolist() == [int(flag) for _, flag in by_hand]
    assert result.unparsed.tolist() == [int(option is None) for option, _ in by_hand]
    value = {"digit": 1.0, "vowel": 2.0, "space": 4.0, None: np.nan}
    np.testing.assert_array_equal(result.values, [value[option] for option, _ in by_hand])
    assert len({answer for (answer,) in result.answers}) == len(TEXTS)  # the texts are told apart


def test_the_same_seed_gives_the_same_samples_whatever_the_batch(gpt2):
    generation = Generation(5, PARSE, target="vowel", samples=3, temperature=1.0)
    first = generate_outcomes(gpt2, TEXTS, generation, seed=7, batch_size=1)
    other = ["Patient: 74 year old male. Answer:", *TEXTS[::-1]]
    second = generate_outcomes(gpt2, other, generation, seed=7, batch_size=5)
    assert second.answers[1:] == first.answers[::-1]
    assert second.options[1:] == first.options[::-1]
    np.testing.assert_array_equal(second.values[1:], first.values[::-1])
    reseeded = generate_outcomes(gpt2, TEXTS, generation, seed=8)
    assert reseeded.answers != first.answers
    assert all(len(set(answers)) > 1 for answers in first.answers)  # samples of a text differ


def test_unparsed_answers_are_counted_and_left_out_or_valued():
    generation = Generation(4, {"yes": r"(?i)\byes\b", "no": r"(?i)\bno\b"}, target="yes")
    assert generation.parse_answer(" Yes, sure") == ("yes", False)
    assert generation.parse_answer(" no, not yes") == ("no", True)  # the earliest match wins
    assert generation.parse_answer(" maybe") == (None, False)
    assert Generation(4, {"a": "x", "b": "x"}, target="a").parse_answer("x") == ("a", True)  # tie: listed first
    assert math.isnan(generation.value_of(None)) and generation.value_of("yes") == 1.0
    assert generation.value_of("no") == 0.0
    counted = Generation(4, {"yes": "yes", "no": "no"}, target="yes", unparsed=0.0)
    assert counted.value_of(None) == 0.0


def test_a_text_whose_samples_never_parse_has_a_nan_value(gpt2):
    never = Generation(3, {"never": "^this will not be generated$"}, target="never", samples=2, temperature=1.0)
    result = generate_outcomes(gpt2, TEXTS[:2], never, seed=0)
    assert np.isnan(result.values).all() and result.unparsed.tolist() == [2, 2]
    counted = generate_outcomes(gpt2, TEXTS[:2], Generation(3, never.parse, target="never", unparsed=0.0), seed=0)
    assert counted.values.tolist() == [0.0, 0.0] and counted.unparsed.tolist() == [1, 1]


def test_result_is_frozen_and_tabulates_every_sample(gpt2):
    generation = Generation(4, PARSE, target="vowel", samples=2, temperature=0.7)
    result = generate_outcomes(gpt2, TEXTS[:3], generation, seed=1)
    assert isinstance(result, GenerationResult)
    with pytest.raises(AttributeError):
        result.values = None
    with pytest.raises(ValueError, match="read-only"):
        result.values[0] = 1.0
    frame = result.to_frame()
    assert list(frame.columns) == ["text", "sample", "answer", "option", "value"] and len(frame) == 6
    means = frame.groupby("text", sort=False)["value"].mean()  # pandas skips the unparsed (nan) ones
    np.testing.assert_allclose(means.to_numpy(), result.values, equal_nan=True)
    assert "6 answers" in result.summary() and "seed 1" in str(result)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Generation(0, {"yes": "yes"}, target="yes"), "max_new_tokens must be an int >= 1, got 0"),
        (lambda: Generation(2, {}, target="yes"), "parse must map option names to regular expressions"),
        (lambda: Generation(2, {"yes": "(yes"}, target="yes"), r"pattern of 'yes' \('\(yes'\) is not a regular"),
        (lambda: Generation(2, {"yes": "yes"}), "exactly one of target .* and values"),
        (lambda: Generation(2, {"yes": "yes"}, target="yes", values={"yes": 1}), "exactly one of target"),
        (lambda: Generation(2, {"yes": "yes"}, target="no"), r"option names are \['yes'\]"),
        (lambda: Generation(2, {"yes": "y", "no": "n"}, values={"yes": 1}), "give every parsed option a number"),
        (lambda: Generation(2, {"yes": "yes"}, target="yes", samples=3), "temperature 0 decodes greedily"),
        (lambda: Generation(2, {"yes": "yes"}, target="yes", temperature=-1), "temperature must be a number >= 0"),
        (lambda: Generation(2, {"yes": "yes"}, target="yes", unparsed="0"), "unparsed must be None or a finite"),
    ],
)
def test_generation_specs_validate_themselves(build, message):
    with pytest.raises(InterventionError, match=message):
        build()


def test_generate_outcomes_checks_its_arguments(gpt2, classifier):
    generation = Generation(4, PARSE, target="vowel")
    with pytest.raises(InterventionError, match="Generation needs a causal-lm model"):
        generate_outcomes(classifier, ["text"], generation, seed=0)
    with pytest.raises(InterventionError, match="seed must be an int >= 0, got -1"):
        generate_outcomes(gpt2, TEXTS, generation, seed=-1)
    with pytest.raises(InterventionError, match="generation must be a Generation"):
        generate_outcomes(gpt2, TEXTS, PARSE, seed=0)
    with pytest.raises(
        InterventionError, match="tokens and 60 new tokens after it would pass the model's 64 positions"
    ):
        generate_outcomes(gpt2, TEXTS[1:2], Generation(60, PARSE, target="vowel"), seed=0)
    empty = generate_outcomes(gpt2, [], generation, seed=0)
    assert empty.values.shape == (0,) and empty.answers == ()


@pytest.fixture(scope="module")
def planted(tmp_path_factory, bpe_tokenizer) -> tuple[ModelAdapter, dict[str, float]]:
    """A GPT-2 whose next token depends only on the last token, wired so that " yes" follows
    " private" with probability 0.6 and " no" with probability 0.3 (every other token shares the rest).

    The block outputs and position embeddings are zeroed, so the final hidden state is the
    normalised embedding of the last token; the output matrix maps those two to chosen logits.
    """
    config = GPT2Config(
        vocab_size=len(bpe_tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2, tie_word_embeddings=False
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
    (yes,), (private,), (no,) = (
        bpe_tokenizer(s, add_special_tokens=False)["input_ids"] for s in (" yes", " private", " no")
    )
    chance = {"private": 0.6, "no": 0.3}
    with torch.no_grad():
        for block in model.transformer.h:
            for projection in (block.attn.c_proj, block.mlp.c_proj):
                projection.weight.zero_()
                projection.bias.zero_()
        model.transformer.wpe.weight.zero_()
        hidden = model.transformer.ln_f(model.transformer.wte.weight[[private, no]])
        logits = torch.empty(2, config.vocab_size)
        for row, p in enumerate(chance.values()):
            logits[row] = math.log((1 - p) / (config.vocab_size - 1))
            logits[row, yes] = math.log(p)
        model.lm_head.weight.copy_((torch.linalg.pinv(hidden) @ logits).T)
    folder = tmp_path_factory.mktemp("planted")
    model.save_pretrained(folder)
    bpe_tokenizer.save_pretrained(folder)
    return ModelAdapter.load(ModelSpec(str(folder), device="cpu")), chance


def unit_texts(n_units: int) -> tuple[list[str], list[str]]:
    """Each unit's text in the treated and the control arm: distinct per unit, told apart by the last token."""
    return [f"Case {unit}: private" for unit in range(n_units)], [f"Case {unit}: no" for unit in range(n_units)]


def test_planted_model_gives_yes_at_the_chosen_probabilities(planted):
    adapter, chance = planted
    yes = adapter.tokenizer(" yes", add_special_tokens=False)["input_ids"][0]
    treated, control = unit_texts(5)
    for texts, p in ((treated, chance["private"]), (control, chance["no"])):
        for text in texts:
            with torch.inference_mode():
                logits = adapter.model(**adapter.tokenizer(text, return_tensors="pt")).logits[0, -1]
            assert torch.softmax(logits.double(), dim=-1)[yes].item() == pytest.approx(p, abs=1e-5)


def test_sampled_shares_follow_the_temperature(planted):
    adapter, chance = planted
    generation = Generation(1, {"yes": "^ yes$"}, target="yes", samples=4000, temperature=0.5, unparsed=0.0)
    result = generate_outcomes(adapter, unit_texts(1)[0], generation, seed=0, batch_size=4000)
    vocab = len(adapter.tokenizer)
    p = chance["private"]
    cooled = p**2 / (p**2 + (vocab - 1) * ((1 - p) / (vocab - 1)) ** 2)  # softmax(logits / 0.5)
    assert result.values[0] == pytest.approx(cooled, abs=4 * math.sqrt(cooled * (1 - cooled) / 4000))


def test_paired_intervals_over_sampled_units_cover_the_planted_effect(planted):
    adapter, chance = planted
    n_units, n_seeds = 24, 250
    treated, control = unit_texts(n_units)
    generation = Generation(1, {"yes": "^ yes$", "no": "^ no$"}, target="yes", samples=3, temperature=1.0, unparsed=0.0)
    effect = chance["private"] - chance["no"]
    critical = stats.t.ppf(0.975, n_units - 1)
    covered, began, cpu = 0, time.perf_counter(), time.process_time()
    for seed in range(n_seeds):
        result = generate_outcomes(adapter, treated + control, generation, seed=seed, batch_size=512)
        differences = result.values[:n_units] - result.values[n_units:]
        half_width = critical * differences.std(ddof=1) / math.sqrt(n_units)
        covered += abs(differences.mean() - effect) <= half_width
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    print(f"coverage {covered / n_seeds:.3f} over {n_seeds} seeds in {elapsed:.1f} s ({cpu:.1f} s of CPU)")
    assert 0.92 <= covered / n_seeds <= 0.98
