"""What ``train`` records about its labels in ``splits.json``, and the settings it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseq.contracts.cache import read_manifest
from medseq.errors import UsageError
from medseq.tracking.outputs import tracks_document
from medseq.tracking.stored import input_hash, store_tracks
from medseq.training.run import _new_splits
from tests.training.conftest import tiny_config
from tests.training.fake_cache import write_fake_cache
from tests.training.test_targets import NEW, PD, PR, SD, course


@pytest.mark.parametrize(("settings", "match"), [
    ({"observe": None, "label": {"kind": "best_after"}}, "label.kind best_after .* set observe"),
    ({"observe": 2, "label": {"kind": "progression"}, "model": {"task": "recist"}},
     "progression needs model.task binary"),
])
def test_early_labels_refuse_unfit_settings(
    fake_cache: Path, settings: dict[str, object], match: str
) -> None:
    with pytest.raises(UsageError, match=match):
        _new_splits(fake_cache, read_manifest(fake_cache), tiny_config(**settings), None)


def test_splits_record_kind_observe_times_and_determined(tmp_path: Path) -> None:
    cache = write_fake_cache(tmp_path / "cache", n_patients=4, size=8)
    courses = [((0, None), (60, SD), (150, PD)), ((0, None), (60, SD), (150, PR)),
               ((0, None), (60, NEW), (150, SD)), ((0, None), (60, SD), (90, SD), (210, SD))]
    assert store_tracks(cache, tracks_document(
        [course(*scans, pid=f"P{i:03d}") for i, scans in enumerate(courses)],
        input_hash=input_hash(cache)))
    config = tiny_config(observe=2, label={"kind": "progression"})
    splits = _new_splits(cache, read_manifest(cache), config, None)
    assert (splits.label_kind, splits.observe, splits.label_source) == (
        "progression", 2, "tracking")
    assert splits.labels == {"P000": 1, "P001": 0, "P003": 0}
    assert splits.times == {"P000": 90.0, "P001": 90.0, "P003": 150.0}
    assert splits.determined == {"P002": "progression already seen by scan 1"}
    assert splits.excluded == splits.determined
    assert splits.excluded_summary == "excluded 1: 1 progression already seen in the first 2 scans"
    overall = _new_splits(cache, read_manifest(cache), tiny_config(observe=2), None)
    assert (overall.label_kind, overall.observe, overall.times) == ("overall", 2, {})
