"""A tiny tracked cohort for ``export-dicom``: DICOM and NIfTI input, a cache made by hand.

The input is a manifest CSV: patient PAT001 has two CT studies (DICOM folders), patient NIF1 two
NIfTI images. The cache is written directly (no registration: every grid is the baseline's), with
pseudonymous ids under the cache's key, native masks on the DICOM grids, and the source series'
UIDs, file counts and grids, as ``medseq preprocess`` records them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseq.contracts.cache import (
    CacheManifest,
    PatientRecord,
    TimepointRecord,
    write_manifest,
)
from medseq.dicom_objects.grid import ImageGrid
from medseq.io.nifti import save_nifti
from medseq.io.volume import Volume
from medseq.preprocess.pseudonym import load_or_create_salt, pseudonym
from tests.dicom_objects.factory import write_ct

DATES = ("20240115", "20240415")
DAYS = (0, 91)


@dataclass(frozen=True)
class ExportCase:
    """Paths and truths of the case."""

    input_csv: Path
    cache: Path
    patient_key: str
    """PAT001's cache id (its pseudonym)."""
    grids: tuple[ImageGrid, ImageGrid]
    masks: tuple[np.ndarray, np.ndarray]
    study_uids: tuple[str, str]


def lesion_masks(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Baseline: a 12 mm lesion (target) and a 6 mm one; follow-up: the first shrunk to 7 mm,
    the second gone, a new 4 mm lesion elsewhere."""
    t0 = np.zeros(shape, dtype=np.uint8)
    t0[8:32, 6:30, 3:8] = 1  # 12 x 12 mm, 5 slices
    t0[38:46, 34:42, 9:12] = 1  # 4 x 4 mm
    t1 = np.zeros(shape, dtype=np.uint8)
    t1[12:26, 10:24, 4:7] = 1  # 7 x 7 mm, inside the first
    t1[2:10, 36:42, 10:12] = 1  # new, away from everything
    return t0, t1


def build(root: Path) -> ExportCase:
    rows = ["patient_id,timepoint,date,image,mask"]
    grids, study_uids = [], []
    for n, date in enumerate(DATES):
        # A dot after the number: no UID pydicom generates (its root + one integer, as the
        # source images' instance UIDs, which pseudonymised objects keep) can contain it.
        study_uid = f"1.2.826.0.1.3680043.8.498.{900 + n}.77"
        _, grid = write_ct(root / "input" / f"pat001_t{n}", study_date=date, study_uid=study_uid,
                           patient_id="PAT001", patient_name="Doe^Jane")
        grids.append(grid)
        study_uids.append(study_uid)
        rows.append(f"PAT001,t{n},{date[:4]}-{date[4:6]}-{date[6:]},pat001_t{n},")
    for n, date in enumerate(DATES):
        image = root / "input" / f"nif1_t{n}.nii.gz"
        save_nifti(Volume(np.zeros((8, 8, 4), dtype=np.int16), np.eye(4)), image)
        rows.append(f"NIF1,t{n},{date[:4]}-{date[4:6]}-{date[6:]},{image.name},")
    input_csv = root / "input" / "cohort.csv"
    input_csv.write_text("\n".join(rows) + "\n")

    cache = root / "cache"
    key = load_or_create_salt(cache)
    masks = lesion_masks(grids[0].shape)
    dicom_id = pseudonym("PAT001", key)
    nifti_id = pseudonym("NIF1", key)
    records = {dicom_id: _patient(cache, dicom_id, grids, masks),
               nifti_id: _patient(cache, nifti_id, None, masks)}
    write_manifest(cache, CacheManifest(medseq_version="test", config={},
                                        config_hash="sha256:0", patients=records))
    return ExportCase(input_csv=input_csv, cache=cache, patient_key=dicom_id,
                      grids=(grids[0], grids[1]), masks=masks,
                      study_uids=(study_uids[0], study_uids[1]))


def _patient(cache: Path, cache_id: str, grids: list[ImageGrid] | None,
             masks: tuple[np.ndarray, np.ndarray]) -> PatientRecord:
    folder = cache / cache_id
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index, mask in enumerate(masks):
        affine = grids[index].affine if grids else np.diag([0.5, 0.5, 1.0, 1.0])
        name = f"t{index:02d}"
        save_nifti(Volume(np.zeros(mask.shape, dtype=np.int16), affine),
                   folder / f"{name}_image.nii")
        save_nifti(Volume(mask, affine), folder / f"{name}_mask.nii")
        save_nifti(Volume(mask, affine), folder / f"{name}_mask_native.nii.gz")
        records.append(TimepointRecord(
            index=index, days=DAYS[index],
            days_since_previous=DAYS[index] - DAYS[max(0, index - 1)],
            series_uid=grids[index].series_uid if grids else None,
            file_count=mask.shape[2] if grids else 1, content_hash="sha256:0",
            image=f"{cache_id}/{name}_image.nii", mask=f"{cache_id}/{name}_mask.nii",
            mask_native=f"{cache_id}/{name}_mask_native.nii.gz",
            native_affine=np.asarray(affine).tolist(), native_shape=list(mask.shape)))
    return PatientRecord(patient_id=cache_id, has_mask=True, timepoints=records)
