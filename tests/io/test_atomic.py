"""Atomic writes leave the old file or the new one, never a half-written one."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseq.io.atomic import atomic_path, write_text_atomic


def test_failed_write_keeps_old_content_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")

    def killed_mid_write() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        killed_mid_write()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_temporary_keeps_suffixes_and_is_renamed(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "image.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz")
        assert tmp.parent == target.parent
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"


def test_write_text_atomic_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "två")
    assert target.read_text(encoding="utf-8") == "två"


def test_output_permissions_follow_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "r.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "r.txt").stat().st_mode & 0o777 == 0o644


def test_temporary_names_carry_their_writer(tmp_path: Path) -> None:
    import os

    from medseq.io.atomic import temporary_owner
    from medseq.processes import HOST_TAG

    with atomic_path(tmp_path / "t00_mask.nii") as tmp:
        assert tmp.name.startswith(".t00_mask.nii.")
        assert tmp.name.endswith(".tmp.nii")
        assert temporary_owner(tmp.name) == (HOST_TAG, os.getpid())


def test_only_temporaries_of_dead_writers_are_abandoned(tmp_path: Path) -> None:
    import os

    from medseq.io.atomic import is_abandoned_temporary, remove_abandoned_temporaries
    from medseq.processes import HOST_TAG
    from tests.processes import dead_pid

    dead = f".manifest.json.{HOST_TAG}-{dead_pid()}.abc_12xy.tmp.json"
    live = f".t00_image.nii.{HOST_TAG}-{os.getpid()}.k2j4h5g6.tmp.nii"
    elsewhere = f".crops.npy.{'0' * 6 if HOST_TAG != '0' * 6 else '1' * 6}-1.q1w2e3r4.tmp.npy"
    legacy = ".manifest.json.q1w2e3r4.tmp.json"
    names = [dead, live, elsewhere, legacy, "manifest.json", ".writer.lock"]
    for name in names:
        (tmp_path / name).write_text("x")
    assert [n for n in names if is_abandoned_temporary(n, sole_writer=False)] == [dead]
    assert [n for n in names if is_abandoned_temporary(n, sole_writer=True)] == [
        dead, live, elsewhere, legacy]
    assert remove_abandoned_temporaries(tmp_path, sole_writer=False) == [tmp_path / dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])
