"""The model a config names, checked before any run folder exists: its folder, its tokenizer, its answers.

Stage: config. May import experiments.errors and the config stage.

Only the tokenizer is loaded, never the weights: `tokenizers` reads tokenizer.json
without importing torch or transformers; a folder without one falls back to
transformers' AutoTokenizer (remote code only when model.trust_remote_code is set).
A run checks again with the tokenizer it loads beside the weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from experiments.config._outcomes import outcome_path, outcome_task
from experiments.config._quote import quoted, shortened
from experiments.config._schema import ExperimentConfig, OutcomeConfig
from experiments.errors import ConfigError

Encode = Callable[[str], tuple[list[int], list[str]]]
"""Text -> (token ids, token strings), without special tokens: how an answer follows a prompt."""


def check_model(config: ExperimentConfig, source: str) -> str:
    """Check the model at `source` (model.id, with a built-in id already resolved to its folder); say what was checked.

    A local folder must exist and hold a tokenizer under which the outcome's answers are
    what the outcome type reads (one token each for next-token outcomes; at least one token
    for a continuation; a known label for a classifier). A hub id cannot be checked offline:
    the words say so. ConfigError names the YAML path, the tokens found and the fix.
    """
    folder = Path(source).expanduser()
    if not folder.is_dir():
        if folder.exists():
            raise ConfigError(f"{quoted(source)} is a file; give the model's folder", path="model.id")
        if source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source:
            raise ConfigError(
                f"model folder {quoted(source)} does not exist; check the path "
                "(relative paths are taken from the working directory)",
                path="model.id",
            )
        return (
            f"model {quoted(config.model.id)} is a hub id, not a local folder: its tokenizer cannot be checked "
            "offline; the run checks the outcome's answers when it loads the model"
        )
    encode = _tokenizer(folder, trust_remote_code=config.model.trust_remote_code)
    checked = [
        _check_outcome(spec, outcome_path(config, index), encode, folder)
        for index, (_, spec) in enumerate(config.named_outcomes)
    ]
    if len(checked) == 1:
        return f"model {config.model.id}: {checked[0]}"
    return f"model {config.model.id}, each outcome checked:\n" + "\n".join(
        f"  {name}: {said}" for (name, _), said in zip(config.named_outcomes, checked, strict=True)
    )


def _check_outcome(outcome: OutcomeConfig, path: str, encode: Encode, folder: Path) -> str:
    """What was checked of one outcome (at YAML `path`) under the folder's tokenizer; ConfigError when it cannot be read."""
    if outcome_task(outcome) == "sequence-classifier":
        if outcome.type == "expected_value":
            labels = "; ".join(_check_label(label, folder, path) for label in outcome.values)
            return f"tokenizer read; {labels}"
        label = outcome.label if outcome.label is not None else outcome.label_index
        return f"tokenizer read; {_check_label(label, folder, path)}"
    if outcome.type == "generation":
        return (
            f"tokenizer read; answers of up to {outcome.max_new_tokens} new tokens "
            f"parsed into {', '.join(outcome.parse)}"
        )
    if outcome.options is not None:
        counts = ", ".join(
            f"{quoted(text)} {len(encode(text)[0])}" for strings in outcome.options.values() for text in strings
        )
        return f"option strings tokenized (tokens each: {counts})"
    if outcome.type == "continuation_logprob":
        ids, _ = encode(outcome.continuation)
        if not ids:
            raise ConfigError(
                f"{quoted(outcome.continuation)} has no tokens under the tokenizer of {folder}; "
                "give a continuation with visible text",
                path=f"{path}.continuation",
            )
        return f"continuation {quoted(outcome.continuation)} is {len(ids)} token(s)"
    _check_answers(outcome.type, outcome.answers, encode, folder, path)
    answers = " and ".join(quoted(answer) for answer in outcome.answers.values())
    return f"answers {answers} are one token each"


def _check_answers(kind: str, answers: dict[str, str], encode: Encode, folder: Path, path: str) -> None:
    """Each answer one token, and no two answers the same token (their difference would be 0 by construction)."""
    owner: dict[int, str] = {}
    for name, answer in answers.items():
        ids, tokens = encode(answer)
        if len(ids) != 1:
            raise ConfigError(
                f"{quoted(answer)} is {len(ids)} tokens {quoted(tokens)} under the tokenizer of {folder}; "
                f"{kind} reads one next-token logit per answer, so each answer must be a single token; "
                "pick another answer (mind the leading space), or use outcome type continuation_logprob",
                path=f"{path}.answers.{name}",
            )
        first = owner.setdefault(ids[0], name)
        if first != name:
            raise ConfigError(
                f"answers {quoted(first)} and {quoted(name)} are the same token {quoted(tokens[0])} under the "
                f"tokenizer of {folder}, so the model cannot tell them apart; give answers that tokenize differently",
                path=f"{path}.answers",
            )


def _check_label(label: str | int, folder: Path, outcome: str) -> str:
    """The label must be one of the classifier's labels (config.json's id2label), or the index one of its classes."""
    path = f"{outcome}.label" if isinstance(label, str) else f"{outcome}.label_index"
    try:
        labels = json.loads((folder / "config.json").read_text(encoding="utf-8"))["id2label"]
        names = [str(labels[key]) for key in sorted(labels, key=int)]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{path.removeprefix(outcome + '.')} {quoted(label)} not checked ({folder} has no config.json with id2label)"
    if isinstance(label, str) and label not in names:
        raise ConfigError(
            f"{quoted(label)} is not a label of the classifier in {folder}; its labels are {quoted(names)} "
            f"(or give label_index: 0 to {len(names) - 1})",
            path=path,
        )
    if isinstance(label, int) and not label < len(names):
        raise ConfigError(
            f"class index {label} is out of range: the classifier in {folder} has {len(names)} classes "
            f"{quoted(names)} (indices 0 to {len(names) - 1})",
            path=path,
        )
    if isinstance(label, str):
        return f"label {quoted(label)} is one of its labels ({', '.join(names)})"
    return f"class index {label} is the label {quoted(names[label])} of {', '.join(names)}"


def _tokenizer(folder: Path, *, trust_remote_code: bool) -> Encode:
    """The folder's tokenizer as an Encode; ConfigError when it holds none that loads."""
    file = folder / "tokenizer.json"
    if file.is_file():
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(file))
        except Exception as error:  # noqa: BLE001 - the Rust library raises a bare Exception for a bad file
            raise ConfigError(
                f"{file} cannot be read as a tokenizer: {shortened(str(error), limit=400)}", path="model.id"
            ) from None
        tokenizer.no_padding()
        tokenizer.no_truncation()

        def encode(text: str) -> tuple[list[int], list[str]]:
            encoding = tokenizer.encode(text, add_special_tokens=False)
            return encoding.ids, encoding.tokens

        return encode
    from transformers import AutoTokenizer

    try:
        loaded = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as error:
        raise ConfigError(
            f"folder {folder} holds no tokenizer that loads (no tokenizer.json, and transformers says: "
            f"{shortened(str(error), limit=400)}); give the folder a model was saved to with its tokenizer",
            path="model.id",
        ) from None

    def encode_slow(text: str) -> tuple[list[int], list[str]]:
        ids = loaded(text, add_special_tokens=False)["input_ids"]
        return ids, loaded.convert_ids_to_tokens(ids)

    return encode_slow
