"""Lesion correspondence across timepoints, in the registered (baseline) frame.

Consecutive timepoints are matched pairwise. A pair of lesions scores by the overlap of their
registered masks (Dice); pairs that do not overlap may still match when their registered
centroids lie closer than ``max(min_distance_mm, distance_factor * (r_a + r_b))``, with ``r`` the
radius of the sphere of the lesion's volume, always ranking below any overlapping pair. The
one-to-one assignment is solved with the Hungarian method
(:func:`scipy.optimize.linear_sum_assignment`). Then:

- an unassigned lesion at t+1 covering at least ``min_overlap_fraction`` of its registered voxels
  with a lesion at t is a *split* fragment of it (it joins that lesion's tracks);
- an unassigned lesion at t covering that fraction with a lesion at t+1 has *merged* into it;
- an unassigned lesion at t+1 that is neither is *new* (a new track); a track with no lesion at
  t+1 has *vanished* there. A vanished track whose lesion reappears near its last position
  (centroid rule above) is picked up again rather than counted as new.

Following LongiSeg, every baseline lesion is a track ("L1" is the largest at baseline) and maps
to the follow-up lesions that carry it; new lesions open tracks numbered on from there.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from scipy.optimize import linear_sum_assignment

from medseq.contracts.tracks import LesionStatus

_FORBIDDEN = 1e6


class LinkKind(str, Enum):
    """How two lesions of consecutive timepoints were linked."""

    MATCH = "match"
    """The one-to-one assignment."""
    SPLIT = "split"
    MERGE = "merge"


@dataclass(frozen=True)
class MatchSettings:
    """Thresholds of the correspondence rules (module docstring)."""

    min_distance_mm: float = 10.0
    distance_factor: float = 1.0
    min_overlap_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("min_distance_mm", "distance_factor", "min_overlap_fraction"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Frame:
    """The lesions of one timepoint as matching sees them.

    The registered masks are kept sparse: ``voxels`` are the sorted flat indices (into the
    baseline grid every frame of a patient shares) of the registered lesion voxels and
    ``labels`` the lesion number there (lesion n is ``n + 1``: its position in ``volumes_ml``
    plus one). Memory follows the lesions, not the scan.
    """

    voxels: np.ndarray
    labels: np.ndarray
    centroids_mm: np.ndarray
    """(n, 3) registered centroids, baseline-frame RAS+ mm."""
    volumes_ml: np.ndarray
    """(n,) volumes, for the size-scaled distance threshold and track numbering."""

    @classmethod
    def from_dense(cls, registered: np.ndarray, centroids_mm: np.ndarray,
                   volumes_ml: np.ndarray) -> Frame:
        """A frame from a dense label array on the baseline grid (0 = background)."""
        voxels = np.flatnonzero(registered)
        return cls(voxels=voxels, labels=registered.ravel()[voxels].astype(np.int64),
                   centroids_mm=np.asarray(centroids_mm, dtype=np.float64).reshape(-1, 3),
                   volumes_ml=np.asarray(volumes_ml, dtype=np.float64))

    @property
    def count(self) -> int:
        return int(self.volumes_ml.shape[0])

    @functools.cached_property
    def registered_sizes(self) -> np.ndarray:
        """(n,) registered voxel count of each lesion."""
        return np.bincount(self.labels, minlength=self.count + 1)[1:self.count + 1]


@dataclass(frozen=True)
class Link:
    """Lesion ``previous`` at t corresponds to lesion ``current`` at t+1 (0-based indices)."""

    previous: int
    current: int
    kind: LinkKind
    """The assignment, or attached by overlap (split, merge)."""


@dataclass(frozen=True)
class Observation:
    """One lesion at one timepoint and the tracks it carries (more than one after a merge)."""

    frame: int
    lesion: int
    """0-based index into that frame's lesions."""
    tracks: tuple[str, ...]
    status: LesionStatus


@dataclass
class Tracking:
    """Tracks of one patient: per frame, each lesion's observation and the absent tracks."""

    observations: list[list[Observation]] = field(default_factory=list)
    absent: list[dict[str, LesionStatus]] = field(default_factory=list)
    """Per frame: track id -> VANISHED for every track seen before and carried by no lesion."""
    track_ids: list[str] = field(default_factory=list)
    """All tracks in numbering order."""
    first_frame: dict[str, int] = field(default_factory=dict)

    def lesions_of(self, frame: int, track: str) -> list[Observation]:
        """The lesions carrying ``track`` at ``frame`` (several after a split, none if gone)."""
        return [obs for obs in self.observations[frame] if track in obs.tracks]


def match_frames(previous: Frame, current: Frame, settings: MatchSettings) -> list[Link]:
    """Correspondences between two timepoints' lesions (module docstring has the rules)."""
    n_prev, n_curr = previous.count, current.count
    if n_prev == 0 or n_curr == 0:
        return []
    overlap = _overlap_counts(previous, current)
    size_prev = previous.registered_sizes
    size_curr = current.registered_sizes
    dice = 2.0 * overlap / np.maximum(size_prev[:, None] + size_curr[None, :], 1)
    near, distance_ratio = _near(previous.centroids_mm, previous.volumes_ml,
                                 current.centroids_mm, current.volumes_ml, settings)
    cost = np.full((n_prev, n_curr), _FORBIDDEN)
    cost = np.where(near, 1.0 + distance_ratio, cost)
    cost = np.where(overlap > 0, 1.0 - dice, cost)
    rows, cols = linear_sum_assignment(cost)
    links = [Link(int(r), int(c), LinkKind.MATCH) for r, c in zip(rows, cols, strict=True)
             if cost[r, c] < _FORBIDDEN]
    matched_prev = {link.previous for link in links}
    matched_curr = {link.current for link in links}
    frac_curr = overlap / np.maximum(size_curr[None, :], 1)
    frac_prev = overlap / np.maximum(size_prev[:, None], 1)
    for c in range(n_curr):
        if c in matched_curr:
            continue
        r = int(np.argmax(overlap[:, c]))
        if overlap[r, c] > 0 and frac_curr[r, c] >= settings.min_overlap_fraction:
            links.append(Link(r, c, LinkKind.SPLIT))
    for r in range(n_prev):
        if r in matched_prev:
            continue
        c = int(np.argmax(overlap[r, :]))
        if overlap[r, c] > 0 and frac_prev[r, c] >= settings.min_overlap_fraction:
            links.append(Link(r, c, LinkKind.MERGE))
    return links


def track_frames(frames: Sequence[Frame], settings: MatchSettings | None = None) -> Tracking:
    """Link every frame to the one before it and give every lesion its tracks."""
    settings = settings or MatchSettings()
    tracking = Tracking()
    last_seen: dict[str, tuple[np.ndarray, float]] = {}
    for index, frame in enumerate(frames):
        if index == 0:
            order = np.argsort(-frame.volumes_ml, kind="stable")
            tracks_of: list[tuple[str, ...]] = [()] * frame.count
            for lesion in order:
                tracks_of[int(lesion)] = (_new_track(tracking, index),)
            tracking.observations.append([
                Observation(index, n, tracks_of[n], LesionStatus.TRACKED)
                for n in range(frame.count)
            ])
            tracking.absent.append({})
        else:
            _link_frame(tracking, frames[index - 1], frame, index, settings, last_seen)
        for obs in tracking.observations[index]:
            for track in obs.tracks:
                last_seen[track] = (frame.centroids_mm[obs.lesion],
                                    float(frame.volumes_ml[obs.lesion]))
    return tracking


def _link_frame(tracking: Tracking, previous: Frame, current: Frame, index: int,
                settings: MatchSettings, last_seen: dict[str, tuple[np.ndarray, float]]) -> None:
    links = match_frames(previous, current, settings)
    prev_obs = tracking.observations[index - 1]
    parents: dict[int, list[int]] = {}
    children: dict[int, list[int]] = {}
    for link in links:
        parents.setdefault(link.current, []).append(link.previous)
        children.setdefault(link.previous, []).append(link.current)
    observations: list[Observation | None] = [None] * current.count
    for lesion in range(current.count):
        parent_list = parents.get(lesion, [])
        if not parent_list:
            continue
        tracks = sorted({t for p in parent_list for t in prev_obs[p].tracks}, key=_track_number)
        if len(parent_list) > 1:
            status = LesionStatus.MERGED
        elif len(children.get(parent_list[0], [])) > 1:
            status = LesionStatus.SPLIT
        else:
            status = LesionStatus.TRACKED
        observations[lesion] = Observation(index, lesion, tuple(tracks), status)
    carried = {t for obs in observations if obs is not None for t in obs.tracks}
    gone = [t for t in tracking.track_ids if t not in carried]
    unclaimed = [n for n in range(current.count) if observations[n] is None]
    for lesion, track in _reappearing(gone, unclaimed, current, settings, last_seen):
        observations[lesion] = Observation(index, lesion, (track,), LesionStatus.TRACKED)
        carried.add(track)
    unclaimed = [n for n in range(current.count) if observations[n] is None]
    for lesion in sorted(unclaimed, key=lambda n: (-float(current.volumes_ml[n]), n)):
        observations[lesion] = Observation(index, lesion, (_new_track(tracking, index),),
                                           LesionStatus.NEW)
    final = [obs for obs in observations if obs is not None]
    tracking.observations.append(final)
    absent: dict[str, LesionStatus] = {}
    for track in tracking.track_ids:
        if not any(track in obs.tracks for obs in final):
            absent[track] = LesionStatus.VANISHED
    tracking.absent.append(absent)


def _reappearing(gone: list[str], unclaimed: list[int], current: Frame, settings: MatchSettings,
                 last_seen: dict[str, tuple[np.ndarray, float]]) -> list[tuple[int, str]]:
    """Pair unclaimed lesions with vanished tracks by the centroid rule (Hungarian)."""
    gone = [t for t in gone if t in last_seen]
    if not gone or not unclaimed:
        return []
    old_c = np.array([last_seen[t][0] for t in gone])
    old_v = np.array([last_seen[t][1] for t in gone])
    near, ratio = _near(old_c, old_v, current.centroids_mm[unclaimed],
                        current.volumes_ml[unclaimed], settings)
    cost = np.where(near, ratio, _FORBIDDEN)
    rows, cols = linear_sum_assignment(cost)
    return [(unclaimed[int(c)], gone[int(r)]) for r, c in zip(rows, cols, strict=True)
            if cost[r, c] < _FORBIDDEN]


def _overlap_counts(previous: Frame, current: Frame) -> np.ndarray:
    """Voxels shared by each pair of lesions: the intersection of two sorted index lists."""
    _, at_prev, at_curr = np.intersect1d(previous.voxels, current.voxels, assume_unique=True,
                                         return_indices=True)
    n_prev, n_curr = previous.count, current.count
    pairs = (previous.labels[at_prev] - 1) * n_curr + (current.labels[at_curr] - 1)
    return np.bincount(pairs, minlength=n_prev * n_curr).reshape(n_prev, n_curr).astype(float)


def _near(centroids_a: np.ndarray, volumes_a: np.ndarray, centroids_b: np.ndarray,
          volumes_b: np.ndarray, settings: MatchSettings) -> tuple[np.ndarray, np.ndarray]:
    """Which pairs lie under the size-scaled distance threshold, and distance / threshold."""
    distance = np.linalg.norm(
        np.asarray(centroids_a)[:, None, :] - np.asarray(centroids_b)[None, :, :], axis=2)
    radius_a = _sphere_radius_mm(np.asarray(volumes_a))
    radius_b = _sphere_radius_mm(np.asarray(volumes_b))
    threshold = np.maximum(settings.min_distance_mm,
                           settings.distance_factor * (radius_a[:, None] + radius_b[None, :]))
    ratio = distance / np.maximum(threshold, 1e-9)
    return ratio <= 1.0, ratio


def _sphere_radius_mm(volumes_ml: np.ndarray) -> np.ndarray:
    return np.cbrt(3.0 * np.maximum(volumes_ml, 0.0) * 1000.0 / (4.0 * np.pi))


def _new_track(tracking: Tracking, frame: int) -> str:
    track = f"L{len(tracking.track_ids) + 1}"
    tracking.track_ids.append(track)
    tracking.first_frame[track] = frame
    return track


def _track_number(track: str) -> int:
    return int(track[1:])
