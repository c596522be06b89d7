"""Correspondence rules on hand-built frames sharing one 1 mm grid."""

from __future__ import annotations

import numpy as np
import pytest

from medseq.tracking.lesions import find_lesions
from medseq.tracking.match import Frame, LesionStatus, MatchSettings, match_frames, track_frames

SHAPE = (60, 60, 20)


def _frame(*boxes: tuple[slice, slice, slice]) -> Frame:
    mask = np.zeros(SHAPE, dtype=np.uint8)
    for box in boxes:
        mask[box] = 1
    found = find_lesions(mask, np.eye(4), min_volume_ml=0)
    return Frame.from_dense(found.components,
                            np.array([les.centroid_mm for les in found.lesions]),
                            np.array([les.volume_ml for les in found.lesions]))


def _cube(x: int, y: int, z: int, size: int) -> tuple[slice, slice, slice]:
    return slice(x, x + size), slice(y, y + size), slice(z, z + size)


def _statuses(tracking, frame: int) -> list[tuple[tuple[str, ...], str]]:  # type: ignore[no-untyped-def]
    return sorted((obs.tracks, obs.status.value) for obs in tracking.observations[frame])


def test_tracks_numbered_by_baseline_size_and_followed() -> None:
    t0 = _frame(_cube(5, 5, 5, 4), _cube(30, 30, 5, 8))
    t1 = _frame(_cube(6, 5, 5, 4), _cube(31, 31, 5, 7))
    tracking = track_frames([t0, t1])
    # Component 1 (raster order) is the small cube; the big one is L1.
    assert [obs.tracks for obs in tracking.observations[0]] == [("L2",), ("L1",)]
    assert [obs.tracks for obs in tracking.observations[1]] == [("L2",), ("L1",)]
    assert all(obs.status is LesionStatus.TRACKED for obs in tracking.observations[1])
    assert tracking.absent[1] == {}


def test_new_and_vanished() -> None:
    t0 = _frame(_cube(5, 5, 5, 6))
    t1 = _frame(_cube(40, 40, 5, 6))  # far beyond the distance threshold
    tracking = track_frames([t0, t1])
    assert _statuses(tracking, 1) == [(("L2",), "new")]
    assert tracking.absent[1] == {"L1": LesionStatus.VANISHED}
    assert tracking.first_frame == {"L1": 0, "L2": 1}


def test_split_fragments_keep_the_parent_track() -> None:
    t0 = _frame(_cube(10, 10, 5, 12))
    t1 = _frame(_cube(10, 10, 5, 5), (slice(17, 22), slice(17, 22), slice(5, 17)))
    tracking = track_frames([t0, t1])
    assert _statuses(tracking, 1) == [(("L1",), "split"), (("L1",), "split")]
    assert len(tracking.lesions_of(1, "L1")) == 2


def test_merge_carries_both_tracks() -> None:
    t0 = _frame(_cube(10, 10, 5, 6), _cube(18, 10, 5, 6))
    t1 = _frame((slice(10, 24), slice(10, 16), slice(5, 11)))
    tracking = track_frames([t0, t1])
    assert _statuses(tracking, 1) == [(("L1", "L2"), "merged")]
    assert tracking.absent[1] == {}


def test_no_overlap_matches_by_centroid_distance() -> None:
    t0 = _frame(_cube(10, 10, 5, 6))
    t1 = _frame(_cube(17, 10, 5, 5))  # moved 7.5 mm, no overlap
    links = match_frames(t0, t1, MatchSettings())
    assert [(link.previous, link.current, link.kind) for link in links] == [(0, 0, "match")]
    strict = MatchSettings(min_distance_mm=2.0, distance_factor=0.5)
    assert match_frames(t0, t1, strict) == []


def test_assignment_prefers_overlap_over_distance() -> None:
    # Two lesions close together; at t1 each has moved onto where the other's centroid was
    # near, but overlap decides.
    t0 = _frame(_cube(10, 10, 5, 6), _cube(20, 10, 5, 6))
    t1 = _frame(_cube(13, 10, 5, 6), _cube(23, 10, 5, 6))
    links = match_frames(t0, t1, MatchSettings())
    assert sorted((link.previous, link.current) for link in links) == [(0, 0), (1, 1)]


def test_reappearing_lesion_resumes_its_track() -> None:
    t0 = _frame(_cube(10, 10, 5, 6), _cube(40, 40, 5, 6))
    t1 = _frame(_cube(40, 40, 5, 6))
    t2 = _frame(_cube(11, 10, 5, 4), _cube(40, 40, 5, 6))
    tracking = track_frames([t0, t1, t2])
    assert tracking.absent[1] == {"L1": LesionStatus.VANISHED}  # equal sizes: raster order
    assert _statuses(tracking, 2) == [(("L1",), "tracked"), (("L2",), "tracked")]
    assert tracking.track_ids == ["L1", "L2"]


def test_empty_frames() -> None:
    empty = _frame()
    one = _frame(_cube(10, 10, 5, 6))
    tracking = track_frames([empty, one, empty])
    assert _statuses(tracking, 1) == [(("L1",), "new")]
    assert tracking.absent[2] == {"L1": LesionStatus.VANISHED}


def test_settings_validate() -> None:
    with pytest.raises(ValueError, match="min_distance_mm"):
        MatchSettings(min_distance_mm=-1)
