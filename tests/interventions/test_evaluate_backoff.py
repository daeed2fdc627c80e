"""Out-of-memory backoff and memory-aware batch sizes, with the error injected on CPU."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from interventions import LogitDiff, attribution_effects, evaluate_outcomes, model_sites, patch_effects
from interventions._backoff import _MAX_BATCH, auto_batch_size, halving, in_batches
from interventions._capture import capture
from interventions._patching import _Engine

TEXTS = [f"Patient: {age} year old with private insurance. Refer for CT? Answer:" for age in range(20, 40)]
OUTCOME = LogitDiff(" yes", " no")
ERRORS = {
    "cuda": lambda rows: torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {rows} GiB"),
    "message": lambda rows: RuntimeError(f"CUDA error: out of memory ({rows} rows)"),
}


def fail_above(monkeypatch, adapter, limit: int, error) -> list[int]:
    """Make the model's forward raise `error` for batches of more than `limit` rows; returns
    the row count of every forward tried."""
    tried: list[int] = []
    forward = adapter.model.forward

    def failing(*args, **kwargs):
        rows = kwargs["input_ids"].shape[0]
        tried.append(rows)
        if rows > limit:
            raise error(rows)
        return forward(*args, **kwargs)

    monkeypatch.setattr(adapter.model, "forward", failing)
    return tried


@pytest.mark.parametrize("kind", ERRORS)
@pytest.mark.parametrize("share_prefix", [True, False])
def test_out_of_memory_halves_the_batch_and_outcomes_stay(gpt2, monkeypatch, kind, share_prefix):
    expected = evaluate_outcomes(gpt2, TEXTS, OUTCOME, batch_size=8, share_prefix=share_prefix)
    tried = fail_above(monkeypatch, gpt2, 3, ERRORS[kind])
    finished: list[int] = []
    values = evaluate_outcomes(gpt2, TEXTS, OUTCOME, batch_size=8, share_prefix=share_prefix, progress=finished.append)
    np.testing.assert_allclose(values, expected, atol=1e-5, rtol=0)
    # 8 and 4 fail, 2 fits, and later batches start at 2: every text once, none skipped.
    assert tried == [8, 4] + [2] * 10
    assert finished == [2] * 10


def test_out_of_memory_at_one_text_names_the_batch_size(gpt2, monkeypatch):
    tried = fail_above(monkeypatch, gpt2, 0, ERRORS["cuda"])
    with pytest.raises(torch.OutOfMemoryError, match=r"batch size 1 \(texts one at a time; halved from 8 .*Tried to "):
        evaluate_outcomes(gpt2, TEXTS, OUTCOME, batch_size=8)
    assert tried == [8, 4, 2, 1]
    with pytest.raises(torch.OutOfMemoryError, match=r"\(texts one at a time\): CUDA out of"):
        evaluate_outcomes(gpt2, TEXTS, OUTCOME, batch_size=1)


def test_other_errors_are_not_retried(gpt2, monkeypatch):
    tried = fail_above(monkeypatch, gpt2, 0, lambda rows: RuntimeError("expected a mask"))
    with pytest.raises(RuntimeError, match="^expected a mask$"):
        evaluate_outcomes(gpt2, TEXTS, OUTCOME, batch_size=8)
    assert tried == [8]


def test_in_batches_runs_every_row_once_in_order_and_keeps_the_smaller_size():
    ran: list[list[int]] = []

    def step(rows: np.ndarray) -> None:
        if 10 in rows and len(rows) > 2:  # one region of the data needs small batches
            raise torch.OutOfMemoryError("CUDA out of memory")
        ran.append(rows.tolist())

    size = in_batches(np.arange(20), 8, step, what="rows")
    assert [row for rows in ran for row in rows] == list(range(20))
    assert [len(rows) for rows in ran] == [8, 2, 2, 2, 2, 2, 2]
    assert size == 2
    assert in_batches(np.arange(5), 8, lambda rows: None, what="rows") == 8
    assert halving(6, lambda size: size * 10, what="rows") == (60, 6)


def test_patching_backs_off_in_capture_and_stacks(gpt2, monkeypatch, patch_case):
    pairs = patch_case.pairs(gpt2)
    sites = model_sites(gpt2, ["resid_pre", "attn_out"])
    positions = ["factor", "last"]
    expected = patch_effects(gpt2, OUTCOME, pairs, sites, positions)
    tried = fail_above(monkeypatch, gpt2, 1, ERRORS["message"])
    run = _Engine._run
    stacks: list[int] = []

    def failing_run(self, state, plan, rows):
        stacks.append(len(rows))
        if len(rows) > 2:
            raise ERRORS["cuda"](len(rows))
        return run(self, state, plan, rows)

    monkeypatch.setattr(_Engine, "_run", failing_run)
    result = patch_effects(gpt2, OUTCOME, pairs, sites, positions)
    np.testing.assert_allclose(result.patched["outcome"], expected.patched["outcome"], atol=1e-6)
    np.testing.assert_array_equal(result.destination, expected.destination)
    assert tried == [4, 2, 1, 1, 1, 1]  # the capture of 4 texts, retried one at a time
    assert stacks[0] == 3 and set(stacks[1:]) == {1}  # a stack of 3, then halves (of 1)
    assert result.work["patches"] == expected.work["patches"]


def test_without_out_of_memory_errors_every_capture_and_stack_runs_whole(gpt2, monkeypatch, patch_case):
    monkeypatch.setattr("interventions._sweep._CPU_BYTES", 1)  # one unit per chunk
    batches, stacks, captures = [], [], []
    planned, run = _Engine._batches, _Engine._stack

    def planning(self, *args):
        for rows in planned(self, *args):
            batches.append(rows.tolist())
            yield rows

    def running(self, state, plan, rows, values):
        stacks.append(rows.tolist())
        return run(self, state, plan, rows, values)

    def capturing(*args, batch_size, **options):
        captures.append(batch_size)
        return capture(*args, batch_size=batch_size, **options)

    monkeypatch.setattr(_Engine, "_batches", planning)
    monkeypatch.setattr(_Engine, "_stack", running)
    monkeypatch.setattr("interventions._patching.capture", capturing)
    patch_effects(gpt2, OUTCOME, patch_case.pairs(gpt2), model_sites(gpt2, ["resid_pre"]), ["factor", "last"])
    assert stacks == batches and len(set(map(len, stacks))) > 1
    assert captures == [2, 2]  # each unit's two texts in one batch


def test_auto_batch_size_is_the_default_on_cpu(gpt2, count_rows):
    rows = count_rows(gpt2)
    texts = [f"Refer {n} for CT? Answer:" for n in range(40)]
    for batch_size in ("auto", None):
        evaluate_outcomes(gpt2, texts, OUTCOME, batch_size=batch_size, share_prefix=False)
    assert rows == [32, 8, 32, 8]
    assert auto_batch_size(gpt2, 20) == 32


def test_auto_batch_size_fits_free_cuda_memory(gpt2, monkeypatch):
    free = {"bytes": 0}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free["bytes"], 80 << 30))
    on_cuda = SimpleNamespace(model=gpt2.model, dtype=torch.float16, device=torch.device("cuda"))
    vocab, hidden, heads, length = len(gpt2.tokenizer), 32, 2, 20
    # float16: 2 bytes per activation; the logits are also copied to float32 (and reduced).
    per_row = length * (2 * (8 * hidden + 3 * 4 * hidden + heads * length) + (2 + 8) * vocab)
    free["bytes"] = 100 * per_row / 0.4
    assert auto_batch_size(on_cuda, length) == 100
    free["bytes"] = 50 * per_row / 0.4
    assert auto_batch_size(on_cuda, length) == 50
    free["bytes"] = 0
    assert auto_batch_size(on_cuda, length) == 1
    free["bytes"] = 80 << 30
    assert auto_batch_size(on_cuda, length) == _MAX_BATCH


@pytest.mark.parametrize(
    "batch_size, message",
    [
        (0, "batch_size must be at least 1, got 0"),
        ("big", "batch_size must be an int, 'auto' or None, got 'big'; 'auto' fits"),
        (2.0, "got 2.0"),
    ],
)
def test_bad_batch_sizes_are_rejected(gpt2, batch_size, message):
    with pytest.raises(ValueError, match=message):
        evaluate_outcomes(gpt2, TEXTS, OUTCOME, batch_size=batch_size)


def test_attribution_backs_off_in_both_captures(gpt2, monkeypatch, patch_case):
    pairs = patch_case.pairs(gpt2)
    sites = model_sites(gpt2, ["resid_pre", "attn_out"])
    expected = attribution_effects(gpt2, OUTCOME, pairs, sites, ["factor", "last"])
    tried = fail_above(monkeypatch, gpt2, 1, ERRORS["cuda"])
    result = attribution_effects(gpt2, OUTCOME, pairs, sites, ["factor", "last"])
    np.testing.assert_allclose(result["estimate"], expected["estimate"], atol=1e-6)
    assert tried[0] > 1 and max(tried[1:]) == 1 and tried.count(1) >= 2 * len(pairs)  # halved, never skipped
