"""Header patterns of real scanner exports that once gave a silently wrong volume.

Each test writes the pattern to disk with pydicom (or uses nibabel's shipped Siemens files) and
checks that medseq either loads the right volume or refuses it with a one-line reason, and that
``scan`` (discovery) refuses what loading would refuse from headers alone.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from medseq.errors import DicomError
from medseq.io.cohort import Cohort, SkipKind
from medseq.io.dicom import load_series, read_header, series_geometry
from medseq.io.discover import discover
from medseq.io.load import load_image
from tests.dicom_factory import default_pixels, make_colour, write_enhanced, write_series

SHAPE = (10, 8, 4)


def scan(path: Path) -> Cohort:
    return discover(path, require_patients=False)


def patient_reason(cohort: Cohort) -> str:
    reasons = [s.reason for s in cohort.skipped if s.kind is SkipKind.PATIENT]
    assert len(reasons) == 1, cohort.skipped
    assert "\n" not in reasons[0]
    return reasons[0]


def load_error(files: list[Path]) -> str:
    with pytest.raises(DicomError) as info:
        load_series(files, name="series-A")
    assert "\n" not in str(info.value)
    return str(info.value)


# -- Siemens MOSAIC --------------------------------------------------------------------------

NIBABEL_DATA = Path(pytest.importorskip("nibabel").__file__).parent / "nicom" / "tests" / "data"


def mosaic_edit(k: int, ds: Dataset) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]


def test_single_mosaic_file_is_refused_by_scan_and_load(tmp_path: Path) -> None:
    paths = write_series(tmp_path, shape=(12, 12, 1), modality="MR", edit=mosaic_edit)
    assert "a Siemens MOSAIC image" in load_error(paths)
    assert "MOSAIC images are not unpacked" in patient_reason(scan(tmp_path))


def test_mosaic_series_of_several_files_is_refused_as_4d(tmp_path: Path) -> None:
    # One mosaic per time point, all at the mosaic's nominal position.
    paths = write_series(tmp_path, shape=(12, 12, 3), offsets=[0, 0, 0], modality="MR",
                         edit=mosaic_edit)
    message = load_error(paths)
    assert "4D mosaic acquisition (3 Siemens MOSAIC files" in message
    assert "4D mosaic" in patient_reason(scan(tmp_path))


@pytest.mark.parametrize("name", ["siemens_dwi_0.dcm.gz", "siemens_dwi_1000.dcm.gz"])
def test_nibabel_siemens_mosaics_are_refused(tmp_path: Path, name: str) -> None:
    source = NIBABEL_DATA / name
    if not source.exists():
        pytest.skip(f"nibabel's test data {name} is not installed")
    target = tmp_path / name.removesuffix(".gz")
    with (gzip.open(source) if name.endswith(".gz") else open(source, "rb")) as fp:
        target.write_bytes(fp.read())
    assert "Siemens MOSAIC image" in load_error([target])


# -- repeated positions ----------------------------------------------------------------------


def write_fmri(folder: Path, *, temporal_tag: bool) -> list[Path]:
    """GE-style fMRI: 4 positions x 3 time points in one series, told apart only by
    InstanceNumber (and NumberOfTemporalPositions when ``temporal_tag``)."""
    series, study = generate_uid(), generate_uid()
    paths: list[Path] = []
    for t in range(3):
        def edit(k: int, ds: Dataset, t: int = t) -> None:
            ds.InstanceNumber = t * SHAPE[2] + k + 1
            ds.AcquisitionNumber = 1
            if temporal_tag:
                ds.NumberOfTemporalPositions = 3

        paths += write_series(folder / f"t{t}", shape=SHAPE, modality="MR", series_uid=series,
                              study_uid=study, edit=edit, seed=t, naming="random")
    return paths


def test_repeated_positions_with_temporal_count_are_refused_as_4d(tmp_path: Path) -> None:
    paths = write_fmri(tmp_path, temporal_tag=True)
    assert "4D: NumberOfTemporalPositions 3" in load_error(paths)
    assert "4D: NumberOfTemporalPositions 3" in patient_reason(scan(tmp_path))


def test_repeated_positions_reach_the_pixel_check(tmp_path: Path) -> None:
    """Nothing in the headers tells the time points apart: discovery must hand every file to
    loading, whose pixel comparison refuses the mix (it used to keep one file per position)."""
    write_fmri(tmp_path, temporal_tag=False)
    image = scan(tmp_path).patients[0].timepoints[0].image
    assert image.file_count == 3 * SHAPE[2]
    with pytest.raises(DicomError, match="two slices at one position with different pixels"):
        load_image(image)


def test_one_instance_uid_with_different_pixels_is_a_conflict(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", shape=SHAPE, modality="MR")
    for n in range(3):  # three more copies of slice 2, the last one lossy
        copy = tmp_path / "s" / f"copy{n}"
        shutil.copy(paths[2], copy)
    ds = pydicom.dcmread(copy)
    ds.PixelData = (ds.pixel_array.astype(np.int16) + 32).tobytes()
    ds.save_as(copy)
    image = scan(tmp_path).patients[0].timepoints[0].image
    assert image.file_count == SHAPE[2] + 3
    with pytest.raises(DicomError, match="the same SOPInstanceUID: conflicting copies"):
        load_image(image)


def test_identical_copies_of_one_instance_are_dropped(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", shape=SHAPE, modality="MR")
    shutil.copy(paths[1], tmp_path / "s" / "copy")
    volume = load_image(scan(tmp_path).patients[0].timepoints[0].image)
    assert volume.shape == SHAPE
    assert volume.provenance.extra["duplicates_removed"] == 1


# -- non-image objects inside an image series ------------------------------------------------


def test_raw_data_object_in_an_image_series_is_left_out(tmp_path: Path) -> None:
    series, study = generate_uid(), generate_uid()
    write_series(tmp_path / "s", shape=SHAPE, modality="MR", series_uid=series,
                 study_uid=study)
    raw = Dataset()  # a Philips raw data object: no pixels, no position
    raw.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66"
    raw.SOPInstanceUID = generate_uid()
    raw.Modality = "MR"
    raw.PatientID = "PAT001"
    raw.StudyInstanceUID = study
    raw.SeriesInstanceUID = series
    raw.StudyDate = "20240115"
    raw.add_new(0x20011001, "LO", "private raw blob")
    raw.file_meta = pydicom.dataset.FileMetaDataset()
    raw.file_meta.MediaStorageSOPClassUID = raw.SOPClassUID
    raw.file_meta.MediaStorageSOPInstanceUID = raw.SOPInstanceUID
    raw.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    raw.save_as(tmp_path / "s" / "XX_Raw.dcm", enforce_file_format=True)
    cohort = scan(tmp_path)
    image = cohort.patients[0].timepoints[0].image
    assert image.file_count == SHAPE[2]
    skipped = {Path(s.path).name: s.reason for s in cohort.skipped}
    assert "raw data object (SOP class 1.2.840.10008.5.1.4.1.1.66), not an image: left out" \
        in skipped["XX_Raw.dcm"]
    assert load_image(image).shape == SHAPE


# -- header-visible refusals in scan ---------------------------------------------------------


def test_colour_series_is_refused_by_scan(tmp_path: Path) -> None:
    write_series(tmp_path, shape=SHAPE, edit=lambda k, ds: make_colour(ds))
    assert "is a colour image (SamplesPerPixel=3)" in patient_reason(scan(tmp_path))


def write_two_stack_enhanced(path: Path, *, components: tuple[str, str],
                             same_pixels: bool = False) -> Path:
    """An enhanced MR file of 2 x 3 frames: frames 4-6 sit where frames 1-3 do."""
    shape = (32, 32, 6)
    pixels = default_pixels(shape)
    if same_pixels:
        pixels[:, :, 3:] = pixels[:, :, :3]
    write_enhanced(path, shape=shape, modality="MR", pixels=pixels, spacing=(1.0, 1.0, 2.0))
    ds = pydicom.dcmread(path)
    frames = ds.PerFrameFunctionalGroupsSequence
    for f, item in enumerate(frames):
        if f >= 3:
            item.PlanePositionSequence[0].ImagePositionPatient = \
                frames[f - 3].PlanePositionSequence[0].ImagePositionPatient
        frame_type = Dataset()
        frame_type.FrameType = ["ORIGINAL", "PRIMARY", components[f >= 3], "NONE"]
        frame_type.ComplexImageComponent = components[f >= 3]
        item.MRImageFrameTypeSequence = DicomSequence([frame_type])
    ds.save_as(path)
    return path


def test_enhanced_file_mixing_magnitude_and_phase_is_refused_by_scan(tmp_path: Path) -> None:
    path = write_two_stack_enhanced(tmp_path / "s" / "mixed.dcm",
                                    components=("MAGNITUDE", "PHASE"))
    message = load_error([path])
    assert "magnitude and phase mixed" in message
    assert "mixed.dcm frame 1 and mixed.dcm frame 4" in message
    assert "magnitude and phase mixed" in patient_reason(scan(tmp_path))


def test_conflicting_frames_are_named_by_frame_number(tmp_path: Path) -> None:
    path = write_two_stack_enhanced(tmp_path / "s" / "twice.dcm",
                                    components=("MAGNITUDE", "MAGNITUDE"))
    assert ("different pixels: twice.dcm frame 1 and twice.dcm frame 4"
            in load_error([path]))


def test_enhanced_file_holding_one_stack_twice_loads(tmp_path: Path) -> None:
    path = write_two_stack_enhanced(tmp_path / "s" / "twice.dcm",
                                    components=("MAGNITUDE", "MAGNITUDE"), same_pixels=True)
    volume = load_series([path])
    assert volume.shape == (32, 32, 3)
    assert volume.provenance.extra["duplicates_removed"] == 3


def test_classic_and_enhanced_copies_of_one_acquisition(tmp_path: Path) -> None:
    shape = (12, 10, 5)
    series, study = generate_uid(), generate_uid()
    write_series(tmp_path / "classic", shape=shape, modality="MR", series_uid=series,
                 study_uid=study)
    write_enhanced(tmp_path / "enhanced" / "multi.dcm", shape=shape, modality="MR",
                   series_uid=series, study_uid=study)
    cohort = scan(tmp_path)
    image = cohort.patients[0].timepoints[0].image
    assert image.shape == shape
    volume = load_image(image)
    assert volume.provenance.extra["duplicates_removed"] == shape[2]
    np.testing.assert_array_equal(volume.array, default_pixels(shape) - 1024.0)


# -- uneven spacing --------------------------------------------------------------------------


def test_scan_names_a_spacing_change(tmp_path: Path) -> None:
    write_series(tmp_path, shape=(*SHAPE[:2], 6), offsets=[0, 4, 8, 15, 22, 29])
    assert "slice spacing changes from 4.0 to 7.0 mm" in patient_reason(scan(tmp_path))


# -- truncated file inside a series (issue 10) -----------------------------------------------


def test_truncated_file_is_named_instead_of_the_gap_it_leaves(tmp_path: Path) -> None:
    paths = write_series(tmp_path, shape=(*SHAPE[:2], 6))
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) - 60])
    reason = patient_reason(scan(tmp_path))
    assert "IM00003.dcm" in reason
    assert "truncated" in reason
    assert "missing slice" not in reason


def test_truncated_last_file_does_not_shorten_the_series(tmp_path: Path) -> None:
    paths = write_series(tmp_path, shape=(*SHAPE[:2], 6))
    data = paths[5].read_bytes()
    paths[5].write_bytes(data[: len(data) - 60])
    assert "IM00006.dcm unusable (truncated" in patient_reason(scan(tmp_path))


# -- gantry tilt keeps every acquired voxel --------------------------------------------------


@pytest.mark.parametrize("tilt", [30.0, -30.0, 17.0])
def test_gantry_tilt_grid_covers_every_acquired_voxel(tmp_path: Path, tilt: float) -> None:
    shape = (10, 16, 6)
    pixels = np.zeros(shape, dtype=np.uint16)
    pixels[:, 0, :] = 1000  # bright tissue along both edges of every slice
    pixels[:, -1, :] = 2000
    pixels[3, 5, :] = 3000
    paths = write_series(tmp_path, shape=shape, spacing=(0.6, 0.5, 2.0), tilt_degrees=tilt,
                         modality="MR", pixels=pixels, signed=False, rescale_slope=None,
                         rescale_intercept=None)
    volume = load_series(paths)
    geometry = series_geometry([read_header(p) for p in paths], name="s")
    assert volume.shape[1] > shape[1]  # the grid grew along the shear
    assert volume.shape == geometry.shape
    # Every acquired voxel is inside the grid: its intensity is all there (linear weights
    # sum to one), per slice.
    for k in range(shape[2]):
        np.testing.assert_allclose(volume.array[:, :, k].sum(), pixels[:, :, k].sum(),
                                   rtol=1e-4)
    # And each acquired voxel centre maps inside the grid.
    ds = pydicom.dcmread(paths[-1], stop_before_pixels=True)
    ipp = np.array(ds.ImagePositionPatient, dtype=float)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    corner = ipp + iop[3:] * 0.5 * (shape[1] - 1)  # far edge (last row) of the last slice
    for point in (ipp, corner):
        ras = point * [-1, -1, 1]
        index = np.linalg.solve(volume.affine, np.append(ras, 1.0))[:3]
        assert np.all(index > -0.01)
        assert np.all(index < np.array(volume.shape) - 0.99)


# -- two processes read a large tree ---------------------------------------------------------


def test_parallel_header_reading_gives_the_serial_result(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    import medseq.io.dicom_tree as dicom_tree

    write_series(tmp_path / "a", shape=(*SHAPE[:2], 5), patient_id="A")
    paths = write_series(tmp_path / "b", shape=(*SHAPE[:2], 5), patient_id="B")
    paths[2].write_bytes(paths[2].read_bytes()[:-50])
    (tmp_path / "notes.dcm").write_text("not DICOM\n" * 30)
    serial = dicom_tree.index_headers(tmp_path)
    monkeypatch.setattr(dicom_tree, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(dicom_tree, "_CHUNK_FILES", 3)
    parallel = dicom_tree.index_headers(tmp_path)
    assert [(p, dict(r)) for p, r in parallel.headers] == [
        (p, dict(r)) for p, r in serial.headers]
    assert parallel.skipped == serial.skipped
    assert parallel.broken == serial.broken
    assert len(parallel.broken) == 1
