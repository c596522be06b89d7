"""A small fake preprocessing cache (manifest.json + crops.npy) for model and training tests.

Responders' lesions shrink over time, non-responders' grow, so a model can learn the label from
the crops; the manifest is written through the real pydantic models.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medseq.contracts.cache import (
    CacheManifest,
    PatientRecord,
    TargetRecord,
    TimepointRecord,
    write_manifest,
)


def write_fake_cache(
    root: Path,
    *,
    n_patients: int = 12,
    size: int = 16,
    seed: int = 0,
    max_timepoints: int = 4,
    max_lesions: int = 3,
    with_labels: bool = True,
    extra_without_crops: int = 0,
) -> Path:
    """Write a cache of ``n_patients`` (+ patients without crops) under ``root``; return it."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "salt.key").write_bytes(rng.bytes(32))
    grid = np.stack(np.meshgrid(*[np.arange(size) - (size - 1) / 2] * 3, indexing="ij"))
    radius_grid = np.sqrt((grid**2).sum(axis=0))
    patients: dict[str, PatientRecord] = {}
    for i in range(n_patients):
        pid = f"P{i:03d}"
        responder = i % 2
        n_t = int(rng.integers(2, max_timepoints + 1))
        n_l = int(rng.integers(1, max_lesions + 1))
        rate = 0.75 if responder else 1.15
        radii = rng.uniform(size / 6, size / 4, size=n_l)
        days = [0]
        for _ in range(n_t - 1):
            days.append(days[-1] + int(rng.integers(40, 90)))
        crops = np.zeros((n_t, n_l, 2, size, size, size), dtype=np.float16)
        timepoints = []
        for t in range(n_t):
            burden = 0.0
            for lesion in range(n_l):
                r = radii[lesion] * rate ** (days[t] / 60)
                mask = radius_grid <= r
                image = rng.normal(0, 0.3, size=(size,) * 3) + 1.5 * mask
                crops[t, lesion, 0] = image
                crops[t, lesion, 1] = mask
                burden += 4 / 3 * math.pi * r**3 / 1000.0 * 8  # 2 mm voxels
            timepoints.append(TimepointRecord(
                index=t, days=days[t], days_since_previous=days[t] - days[t - 1] if t else 0,
                file_count=1, content_hash=f"h{i}{t}", image=f"{pid}/t{t:02d}_image.nii",
                mask=f"{pid}/t{t:02d}_mask.nii", lesion_volume_ml=round(burden, 4),
            ))
        (root / pid).mkdir(exist_ok=True)
        np.save(root / pid / "crops.npy", crops)
        patients[pid] = PatientRecord(
            patient_id=pid, input_hash=f"in{i}", label=responder if with_labels else None,
            has_mask=True, timepoints=timepoints,
            targets=[TargetRecord(index=j, centroid_mm=[0.0, 0.0, 0.0], volume_ml=1.0)
                     for j in range(n_l)],
            crops=f"{pid}/crops.npy", crop_shape=[n_t, n_l, 2, size, size, size],
        )
    for j in range(extra_without_crops):
        pid = f"Q{j:03d}"
        patients[pid] = PatientRecord(
            patient_id=pid, label=0, has_mask=False,
            timepoints=[TimepointRecord(index=0, days=0, days_since_previous=0, file_count=1,
                                        content_hash="x", image=f"{pid}/t00_image.nii")],
        )
    manifest = CacheManifest(
        medseq_version="0.1.0", config={"crop_size": size, "spacing_mm": 2.0},
        config_hash="sha256:fake", patients=patients,
    )
    write_manifest(root, manifest)
    return root
