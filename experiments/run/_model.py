"""Loading the run's model, recording which model it was in the manifest, and checking it against a resumed run.

Stage: run. May import interventions, experiments.errors, the config and demo stages.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from experiments.config import Experiment
from experiments.demo import resolve_model_path
from experiments.run._store import RunStore, package_versions
from interventions import AnswerProb, ChoiceProb, ContinuationLogProb, ExpectedValue, LogitDiff, ModelAdapter, Outcome


def load_model(experiment: Experiment) -> tuple[ModelAdapter, dict[str, Any]]:
    """The config's model (a built-in one from its packaged folder) and its manifest record.

    The record holds its id, path, fingerprint (weights and tokenizer), device, dtype and each
    outcome's definition as this model reads it (by outcome name).
    """
    spec = experiment.model_spec
    path = resolve_model_path(spec.path)
    adapter = ModelAdapter.load(replace(spec, path=path))
    record = {
        "model_id": experiment.config.model.id,
        "model_path": adapter.spec.path,
        "model_fingerprint": adapter.fingerprint(),
        "device": str(adapter.device),
        "dtype": str(adapter.dtype).removeprefix("torch."),
        "outcome_definitions": {
            name: outcome_definition(reader, adapter) for name, reader in experiment.readers.items()
        },
    }
    return adapter, record


def load_run_model(experiment: Experiment, store: RunStore, manifest: dict[str, Any]) -> ModelAdapter:
    """Load the model; refuse (RunFolderError) a resumed run made with another one; record it in `manifest`.

    The check comes before `manifest` changes, so a refused attempt leaves the stored
    run's provenance in place.
    """
    adapter, record = load_model(experiment)
    current = {**record, "packages": package_versions()}
    store.check_provenance(current)
    manifest.update(current)
    store.write_manifest(manifest)
    return adapter


def outcome_definition(outcome: Outcome, adapter: ModelAdapter) -> dict[str, Any]:
    """What the outcome reads on this model: its spec, the token ids of its answers, the classifier's labels.

    The tokenizer's vocabulary is in the fingerprint but its splitting rules are not, so the
    answers' token ids are recorded too.
    """
    answers: tuple[str, ...] = ()
    if isinstance(outcome, LogitDiff):
        answers = (outcome.positive, outcome.negative)
    elif isinstance(outcome, AnswerProb):
        answers = tuple(outcome.answers.values())
    elif isinstance(outcome, ContinuationLogProb):
        answers = (outcome.continuation,)
    elif isinstance(outcome, (ChoiceProb, ExpectedValue)) and outcome.options is not None:
        answers = tuple(text for strings in outcome.options.values() for text in strings)
    definition: dict[str, Any] = {"spec": repr(outcome)}
    if answers:
        definition["answer_tokens"] = {
            answer: adapter.tokenizer(answer, add_special_tokens=False)["input_ids"] for answer in answers
        }
    if adapter.spec.task == "sequence-classifier":
        definition["labels"] = {str(index): label for index, label in adapter.model.config.id2label.items()}
    return definition
