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
