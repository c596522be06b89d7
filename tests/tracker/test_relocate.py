"""relocate(): a derived cache's record names the source cache's files, native image included."""

from __future__ import annotations

from pathlib import Path

from medseq.contracts.cache import PatientRecord, TimepointRecord
from medseq.tracker.fill import relocate


def test_relocate_moves_every_file_of_a_timepoint(tmp_path: Path) -> None:
    tp = TimepointRecord(index=0, days=0, days_since_previous=0, file_count=1, content_hash="h",
                         image="P1/t00_image.nii", image_native="P1/t00_image_native.nii.gz",
                         mask="P1/t00_mask.nii", mask_native="P1/t00_mask_native.nii.gz")
    record = PatientRecord(patient_id="P1", timepoints=[tp], crops="P1/crops.npy")
    moved = relocate(record, tmp_path / "cache", tmp_path / "derived")
    out = moved.timepoints[0]
    for before, after in ((tp.image, out.image), (tp.image_native, out.image_native),
                          (tp.mask, out.mask), (tp.mask_native, out.mask_native),
                          (record.crops, moved.crops)):
        assert after == f"../cache/{before}"
