"""A digest of everything the generator computes for two patients, exact to the last bit.

Run as ``python -m tests.data.synthetic_digest`` it prints the digest and the numpy SIMD
extensions that were active, so a test can compare a run on a narrower SIMD path (a subprocess
with ``NPY_DISABLE_CPU_FEATURES``) with the default one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any

import numpy as np

PATIENTS = (0, 5)
"""A DICOM (LPS grid) and a NIfTI patient of the bundled cohort's settings."""


def generator_digest() -> str:
    """sha256 over plans, ground truth, ``ground_truth.json`` records and one rendered scan each."""
    from medseq.data.synthetic.cohort import CohortSpec, _patient_record
    from medseq.data.synthetic.render import render_scan
    from medseq.data.synthetic.truth import label_volume, patient_truth

    spec = CohortSpec(patients=12, timepoints=(2, 4), fmt="both", size="small", seed=31,
                      repositioning_mm=None, lesions=(1, 5), dicom_compression="none")
    digest = hashlib.sha256()
    for index in PATIENTS:
        plan = spec.plan(index)
        _update(digest, plan)
        truth = patient_truth(plan)
        for t, scan in enumerate(truth.scans):
            digest.update(label_volume(scan, plan.scans[t].grid.shape).tobytes())
        record = _patient_record(plan, truth, paths=None)
        digest.update(json.dumps(record, sort_keys=True).encode())
        digest.update(render_scan(plan, 0, truth.scans[0], seed=spec.seed).tobytes())
    return digest.hexdigest()


def dispatched_simd() -> tuple[list[str], list[str]]:
    """numpy's SIMD extensions beyond its baseline: (all it was built to dispatch to, those in
    use in this process)."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy 1.x
        from numpy.core import _multiarray_umath as umath  # type: ignore[no-redef]
    dispatch = list(umath.__cpu_dispatch__)
    return dispatch, [f for f in dispatch if umath.__cpu_features__.get(f)]


def _update(digest: Any, value: Any) -> None:
    """Hash a plan exactly: floats by their bits, arrays by their bytes."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            digest.update(field.name.encode())
            _update(digest, getattr(value, field.name))
    elif isinstance(value, np.ndarray):
        digest.update(str(value.dtype).encode() + repr(value.shape).encode() + value.tobytes())
    elif isinstance(value, dict):
        for key in sorted(value):
            digest.update(str(key).encode())
            _update(digest, value[key])
    elif isinstance(value, list | tuple):
        for item in value:
            _update(digest, item)
    elif isinstance(value, float | np.floating):
        digest.update(float(value).hex().encode())
    elif isinstance(value, int | str | bool | dt.date | np.integer | np.bool_) or value is None:
        digest.update(repr(value).encode())
    else:
        raise TypeError(f"cannot hash {type(value).__name__}")


if __name__ == "__main__":
    print(json.dumps({"digest": generator_digest(), "simd": dispatched_simd()[1]}))
