"""Follow-ups on their own grid: the registered -> own-grid maps, crops, label carriage, and a
filled cache whose follow-up masks are written on the source image's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from medseq.cli import app
from medseq.contracts.cache import read_manifest
from medseq.io.nifti import load_nifti
from medseq.tracker.pairs import load_patient, normaliser
from medseq.tracker.prompt import crop
from medseq.tracker.views import (
    apply,
    labels_to_registered,
    load_view,
    sample_crop,
    warp_labels,
)
from tests.tracker.test_fill import StubTracker, _stub
from tests.tracker.tiny_cache import grid_affine, shift_array, write_tiny_cache

OFFSET = (3, -2, 1)


def _rotation(degrees: float, shift: tuple[float, float, float]) -> np.ndarray:
    a = np.radians(degrees)
    matrix = np.eye(4)
    matrix[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    matrix[:3, 3] = shift
    return matrix


def test_sample_crop_equals_crop_on_the_same_grid_and_shifts_with_a_translation() -> None:
    rng = np.random.default_rng(0)
    array = rng.normal(size=(30, 28, 20)).astype(np.float32)
    centre = np.array([10, 20, 5])
    assert np.array_equal(sample_crop(array, np.eye(4), centre, 16, order=1),
                          crop(array, centre, 16))
    move = np.eye(4)
    move[:3, 3] = [-2, 1, 3]  # registered voxel r is view voxel r + (-2, 1, 3)
    assert np.allclose(sample_crop(array, move, centre, 16, order=1),
                       crop(array, centre - move[:3, 3].astype(int), 16))
    # far outside the array: zeros, not an error
    assert not sample_crop(array, np.eye(4), np.array([500, 500, 500]), 8, order=0).any()


def test_label_carriage_is_nearest_neighbour_both_ways() -> None:
    labels = np.zeros((30, 30, 12), dtype=np.uint8)
    labels[8:14, 9:16, 3:7] = 1
    labels[20:24, 18:22, 5:9] = 2
    to_view = _rotation(7.0, (1.3, -0.6, 0.4))
    carried = warp_labels(labels, to_view, (32, 31, 13))
    # brute force over the whole view grid
    grid = np.indices((32, 31, 13)).reshape(3, -1).T
    source = np.rint(apply(np.linalg.inv(to_view), grid)).astype(int)
    inside = np.all((source >= 0) & (source < labels.shape), axis=1)
    expected = np.zeros(len(grid), dtype=np.uint8)
    expected[inside] = labels[tuple(source[inside].T)]
    assert np.array_equal(carried, expected.reshape(32, 31, 13))
    back = labels_to_registered(carried, to_view, labels.shape)
    for value in (1, 2):  # a small rotation carried there and back keeps each lesion
        dice = 2 * ((back == value) & (labels == value)).sum() / (
            (back == value).sum() + (labels == value).sum())
        assert dice > 0.85
    assert np.array_equal(warp_labels(labels, np.eye(4), labels.shape), labels)


def test_load_view_uses_the_source_grid_when_the_cache_keeps_it(tmp_path: Path) -> None:
    cache = write_tiny_cache(tmp_path / "c", patients=1, native_offset=OFFSET)
    manifest = read_manifest(cache)
    record = manifest.patients["P000"]
    config = normaliser(manifest.config)
    view = load_view(cache, record, 1, config)
    assert view.native
    expected = np.eye(4)
    expected[:3, 3] = -np.asarray(OFFSET)
    assert np.allclose(view.to_view, expected)
    assert np.allclose(view.affine, record.timepoints[1].native_affine)
    registered = load_view(cache, record, 1, config, native=False)
    assert not registered.native
    assert np.allclose(registered.to_view, np.eye(4))
    assert np.array_equal(view.image, shift_array(registered.image, OFFSET, view.image[0, 0, 0]))
    # the source image gone: the registered grid, as in a cache written before it existed
    (cache / str(record.timepoints[1].image_native)).unlink()
    assert not load_view(cache, record, 1, config).native


def test_training_pairs_link_follow_ups_on_their_own_grid(tmp_path: Path) -> None:
    cache = write_tiny_cache(tmp_path / "c", patients=1, native_offset=OFFSET)
    manifest = read_manifest(cache)
    config = normaliser(manifest.config)
    own = load_patient(cache, manifest.patients["P000"], config)
    flat = load_patient(cache, manifest.patients["P000"], config, native=False)
    assert own is not None
    assert flat is not None
    assert own.links == flat.links
    assert own.new == flat.new
    for t in (1, 2):
        assert np.allclose(own.timepoints[t].centroids + OFFSET, flat.timepoints[t].centroids)


def test_track_writes_follow_up_masks_on_the_source_grid(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The stub copies the carried baseline mask: on the source grid it must land where the
    baseline lesion lies in that grid's voxels, and the registered mask must be the baseline's."""
    cache = write_tiny_cache(tmp_path / "cache", patients=1, timepoints=2,
                             follow_up_masks=False, native_offset=OFFSET)
    (tmp_path / "run").mkdir()
    _stub(monkeypatch, StubTracker())
    result = CliRunner().invoke(app, ["track", str(cache), "-o", str(tmp_path / "out"),
                                      "--tracker", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    derived = tmp_path / "out/tracker_cache"
    tp = read_manifest(derived).patients["P000"].timepoints[1]
    native = load_nifti(derived / str(tp.mask_native))
    source = read_manifest(cache).patients["P000"].timepoints[1]
    assert np.allclose(native.affine, source.native_affine)
    assert tp.native_affine is not None
    assert np.allclose(tp.native_affine, source.native_affine)
    baseline = load_nifti(cache / "P000/t00_mask.nii").array
    components, _ = ndimage.label(baseline > 0, structure=np.ones((3, 3, 3)))
    assert np.array_equal(native.array, shift_array(components.astype(np.uint8), OFFSET, 0))
    registered = load_nifti(derived / str(tp.mask))
    assert np.allclose(registered.affine, grid_affine())
    assert np.array_equal(registered.array > 0, baseline > 0)


def test_a_source_grid_of_another_spacing_is_not_used(tmp_path: Path) -> None:
    """The network reads the spacing it was trained at: a source image at another spacing
    (a 1 mm scan resampled to a coarser cache) is tracked on the registered grid."""
    from medseq.io.nifti import save_nifti
    from medseq.io.volume import Volume

    cache = write_tiny_cache(tmp_path / "c", patients=1, native_offset=OFFSET)
    manifest = read_manifest(cache)
    record = manifest.patients["P000"]
    tp = record.timepoints[1]
    source = load_nifti(cache / str(tp.image_native))
    finer = source.affine.copy()
    finer[:3, :3] *= 0.5
    save_nifti(Volume(source.array, finer), cache / str(tp.image_native))
    view = load_view(cache, record, 1, normaliser(manifest.config))
    assert not view.native
    assert np.allclose(view.to_view, np.eye(4))
