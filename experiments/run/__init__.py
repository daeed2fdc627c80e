"""Stage 3, run: the run folder and the two run-mode fronts that turn an Experiment into evaluated units.

Stage: run. May import graphs, interventions, causal, experiments.errors, the config and demo stages.

A front draws templated units from the structural model (`evaluate_templated_units`) or
loads and rewrites documents (`evaluate_documents`), evaluates every text through an
executor, stores units and outcomes, and returns `EvaluatedUnits` for the steps.
`RunStore` is the folder's one writer (a lock) and lists every file with its sha256 in the
manifest; `verify_checksums` checks a folder against that list, `read_table` reads a table
back as the run computed it (CSV formula prefixes undone). Public names load with their
module on first use, so `paribus validate` can count rewrites without importing torch.
"""

from graphs._lazy import lazy_exports

_EXPORTS = {
    "_checksums": ("verify_checksums",),
    "_csv_cells": ("read_table",),
    "_documents": ("evaluate_documents",),
    "_evaluated": ("EvaluatedUnits",),
    "_executor": (
        "LocalExecutor",
        "RayExecutor",
        "import_ray",
    ),
    "_lock": ("LockHolder",),
    "_model": ("load_model",),
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
    "EvaluatedUnits",
    "LocalExecutor",
    "LockHolder",
    "Progress",
    "RayExecutor",
    "Report",
    "RunStore",
    "ShardStore",
    "SourceSupport",
    "TemplatedUnits",
    "arm_texts",
    "base_manifest",
    "config_hash",
    "counting",
    "draw_units",
    "evaluate_documents",
    "evaluate_templated_units",
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
