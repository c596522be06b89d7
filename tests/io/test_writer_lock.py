"""One writer per output folder: a second is refused naming the first; shards coexist."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from medseq.errors import ExitCode, OutputInUseError
from medseq.io.writer_lock import LOCK_NAME, acquire, writer_lock
from tests.processes import lock_holder


def test_a_second_writer_is_refused_naming_the_first(tmp_path: Path) -> None:
    with lock_holder(tmp_path, what="cache") as holder:
        with pytest.raises(OutputInUseError) as caught:
            acquire(tmp_path, what="cache")
        assert caught.value.exit_code == ExitCode.USAGE
        assert str(caught.value) == (f"{tmp_path}: cache in use by process {holder.pid}; wait "
                                     "for it to finish, or use another folder")
        record = json.loads((tmp_path / LOCK_NAME).read_text())
        assert (record["pid"], record["host"], record["shard"]) == (
            holder.pid, socket.gethostname(), None)
        with pytest.raises(OutputInUseError, match=f"process {holder.pid};"):
            acquire(tmp_path, shard=(1, 2))  # a shard must not join a whole-cache run either
    with writer_lock(tmp_path) as lock:  # released when the holder ended
        assert lock.sole_writer


def test_shards_coexist_but_not_two_copies_of_one_shard(tmp_path: Path) -> None:
    with lock_holder(tmp_path, shard=(1, 2)) as first, writer_lock(tmp_path,
                                                                    shard=(2, 2)) as second:
        assert not second.sole_writer  # shard 1/2 may be writing temporary files
        with pytest.raises(OutputInUseError, match=rf"process {first.pid} \(shard 1/2\)"):
            acquire(tmp_path, shard=(1, 2))
        with pytest.raises(OutputInUseError, match="in use by process"):
            acquire(tmp_path)  # a run without --shard would redo the shards' patients


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    with lock_holder(tmp_path) as holder:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        with writer_lock(tmp_path) as lock:  # the kernel dropped the dead process's lock
            assert lock.sole_writer


def test_a_refused_run_leaves_no_folder_it_created(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "out"
    with pytest.raises(ValueError), writer_lock(folder):
        raise ValueError("bad input")
    assert not folder.exists()
    with writer_lock(folder):
        (folder / "result.csv").write_text("x")
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME, "result.csv"]
