"""Independent seeds per analysis, derived from the config's one seed.

Stage: steps. Imports nothing of Paribus.
"""

from __future__ import annotations

import numpy as np

ESTIMATION = 0
"""Stream of contrast i's paired estimate: ESTIMATION + i."""
MEDIATION = 1_000
"""Stream of patching sweep i: MEDIATION + i."""
EVIDENCE = 2_000
OBSERVATIONAL = 3_000
"""Stream of contrast i's observational estimate: OBSERVATIONAL + i; the review's surrogates use it too."""
HUMAN_PAIRS = 4_000
"""Stream of contrast i's human-pair estimate: HUMAN_PAIRS + i."""


def analysis_seed(seed: int, stream: int) -> int:
    """The seed of one analysis: the same config seed and stream always give the same number."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])
