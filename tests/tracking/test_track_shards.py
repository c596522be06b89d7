"""``track --shard K/N`` into one OUT, then ``track --merge OUT``: the same three files as one
process."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseq.cli import app
from tests.tracking.cache_factory import CacheBuilder, Disc, Scan

runner = CliRunner()
FILES = ("lesions.csv", "response.csv", "tracks.json")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    builder = CacheBuilder(tmp_path_factory.mktemp("cache"))
    for i, (before, after) in enumerate([(30.0, 18.0), (20.0, 26.0), (25.0, 25.0)]):
        builder.add(f"P{i + 1}", Scan((Disc((-10.0, 0.0, 0.0), before),), days=0),
                    Scan((Disc((-10.0, 0.0, 0.0), after),), days=42))
    builder.add("P4", Scan((), days=0, has_mask=False), Scan((), days=30, has_mask=False))
    return builder.write()


@pytest.fixture(scope="module")
def single(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single")
    result = runner.invoke(app, ["track", str(cache), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    return out


def _track(cache: Path, out: Path, shard: str, *extra: str) -> None:
    result = runner.invoke(app, ["track", str(cache), "-o", str(out), "--shard", shard, *extra])
    assert result.exit_code == 0, result.stderr
    assert "after every shard: medseq track --merge" in result.stderr


@pytest.mark.parametrize("n", [1, 2, 4])
def test_merged_track_shards_equal_one_process(n: int, cache: Path, single: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    for k in range(1, n + 1):
        _track(cache, out, f"{k}/{n}")
    assert not (out / "tracks.json").exists()
    for _ in range(2):  # idempotent
        result = runner.invoke(app, ["track", "--merge", str(out)])
        assert result.exit_code == 0, result.stderr
        for name in FILES:
            assert (out / name).read_bytes() == (single / name).read_bytes(), name


def test_a_merge_with_a_missing_shard_names_its_patients(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _track(cache, out, "1/2")
    result = runner.invoke(app, ["track", "--merge", str(out)])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {out}: cannot merge: shards not finished: 2/2; missing "
                             "patients: P2, P4; rerun those shards, then merge again\n")
    assert not any((out / name).exists() for name in FILES)


def test_shards_with_different_settings_are_refused(cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _track(cache, out, "1/2")
    _track(cache, out, "2/2", "--min-volume", "0.5")
    result = runner.invoke(app, ["track", "--merge", str(out)])
    assert result.exit_code == 2
    assert "shards were made with different settings or caches (1/2; 2/2)" in result.stderr
    assert not any((out / name).exists() for name in FILES)


def test_shard_auto_outside_an_array_job_is_refused(cache: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    result = runner.invoke(app, ["track", str(cache), "-o", str(tmp_path / "o"),
                                 "--shard", "auto"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --shard auto: SLURM_ARRAY_TASK_ID")
    assert not (tmp_path / "o").exists()
