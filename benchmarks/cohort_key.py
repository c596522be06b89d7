"""A fixed pseudonym key for the synthetic caches the benchmarks make, so reruns deal the same
patient-level splits.

``train`` and ``train-tracker`` deal their folds and held-out patients over the cache's
pseudonyms, which are keyed hashes under the cache's random ``salt.key``: the same seed on a
freshly preprocessed copy of the same cohort (a new key) picks other patients. A benchmark's
cache therefore gets a key derived from the cohort's name before ``preprocess`` first runs
(``preprocess`` keeps a key it finds in the output folder). Only for generated synthetic
cohorts: a derived key is public, and a real cohort's key must stay secret.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from medseq.contracts.cache import SALT_NAME
from medseq.preprocess.pseudonym import write_salt


def pin_key(cache: Path, cohort: str) -> bool:
    """Give ``cache`` (not yet preprocessed) the key derived from ``cohort``; False, and
    nothing written, when it already has a key (an existing cache keeps its pseudonyms)."""
    cache = Path(cache)
    if (cache / SALT_NAME).exists():
        return False
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"medseq synthetic benchmark cohort {cohort}".encode()).digest()
    write_salt(cache, key)
    return True
