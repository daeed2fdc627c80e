"""Stage 3, run: the run folder and the two run-mode fronts that turn an Experiment into evaluated units.

Stage: run. May import graphs, interventions, causal, experiments.errors, the config and demo stages.

A front draws templated units from the structural model (`evaluate_templated_units`) or
loads and rewrites documents (`evaluate_documents`), evaluates every text through an
executor, stores units and outcomes, and returns `EvaluatedUnits` for the steps.
`PatchRunner` runs a patching sweep, `EvidenceReader` attention and saliency readings, in
blocks of units through an executor (`BlockRunner`), each block stored as a shard
(`BlockShards`) so a resumed run skips it.
`RunStore` is the folder's one writer (a lock) and lists every file with its sha256 in the
manifest; `verify_checksums` checks a folder against that list, `read_table` reads a table
back as the run computed it (CSV formula prefixes undone). Public names load with their
module on first use, so `paribus validate` can count rewrites without importing torch.
"""

from graphs._lazy import lazy_exports

_EXPORTS = {
    "_block_shards": (
        "BlockRunner",
        "BlockShards",
    ),
    "_checksums": ("verify_checksums",),
    "_csv_cells": ("read_table",),
    "_documents": ("evaluate_documents",),
    "_evaluated": ("EvaluatedUnits",),
    "_evidence_blocks": (
        "EvidenceReader",
        "Reading",
        "Readout",
    ),
    "_executor": (
        "Executor",
        "LocalExecutor",
        "RayExecutor",
        "executor_for",
        "import_ray",
    ),
    "_lock": ("LockHolder",),
    "_model": ("load_model",),
    "_patch_blocks": (
        "PatchRunner",
        "PatchWork",
        "SweepResult",
    ),
    "_progress": (
        "Progress",
        "Report",
        "counting",
        "stage",
    ),
    "_rewriting": (
        "rewrite_documents",
        "rewritten_pair",
    ),
    "_shards": ("ShardStore",),
    "_store": (
        "RunStore",
        "base_manifest",
        "config_hash",
        "read_outcomes",
        "utc_now",
    ),
    "_support": (
        "SourceSupport",
        "source_support",
    ),
    "_templated": (
        "TemplatedUnits",
        "evaluate_templated_units",
        "stored_outcomes",
    ),
    "_units": (
        "arm_texts",
        "draw_units",
        "realize_arms",
    ),
}
_MODULE_OF, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "BlockRunner",
    "BlockShards",
    "EvaluatedUnits",
    "EvidenceReader",
    "Executor",
    "LocalExecutor",
    "LockHolder",
    "PatchRunner",
    "PatchWork",
    "Progress",
    "RayExecutor",
    "Reading",
    "Readout",
    "Report",
    "RunStore",
    "ShardStore",
    "SourceSupport",
    "SweepResult",
    "TemplatedUnits",
    "arm_texts",
    "base_manifest",
    "config_hash",
    "counting",
    "draw_units",
    "evaluate_documents",
    "evaluate_templated_units",
    "executor_for",
    "import_ray",
    "load_model",
    "read_outcomes",
    "read_table",
    "realize_arms",
    "rewrite_documents",
    "rewritten_pair",
    "source_support",
    "stage",
    "stored_outcomes",
    "utc_now",
    "verify_checksums",
]
