"""Stage 3, run: the run folder and the two run-mode fronts that turn an Experiment into evaluated units.

Stage: run. May import graphs, interventions, causal, experiments.errors, the config and demo stages.

A front draws templated units from the structural model (`evaluate_templated_units`) or
loads and rewrites documents (`evaluate_documents`), evaluates every text through an
executor, stores units and outcomes, and returns `EvaluatedUnits` for the steps.
`RunStore` is the folder's one writer (a lock) and lists every file with its sha256 in the
manifest; `verify_checksums` checks a folder against that list, `read_table` reads a table
back as the run computed it (CSV formula prefixes undone).
"""

from experiments.run._checksums import verify_checksums
from experiments.run._csv_cells import read_table
from experiments.run._documents import evaluate_documents
from experiments.run._evaluated import EvaluatedUnits
from experiments.run._executor import LocalExecutor, RayExecutor, import_ray
from experiments.run._lock import LockHolder
from experiments.run._model import load_model
from experiments.run._progress import Progress, Report, counting, stage
from experiments.run._rewriting import rewritten_pair
from experiments.run._shards import ShardStore
from experiments.run._store import RunStore, base_manifest, config_hash, read_outcomes, utc_now
from experiments.run._templated import TemplatedUnits, evaluate_templated_units, stored_outcomes
from experiments.run._units import arm_texts, draw_units, realize_arms

__all__ = [
    "EvaluatedUnits",
    "LocalExecutor",
    "LockHolder",
    "Progress",
    "RayExecutor",
    "Report",
    "RunStore",
    "ShardStore",
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
    "rewritten_pair",
    "stage",
    "stored_outcomes",
    "utc_now",
    "verify_checksums",
]
