"""Walk a folder tree safely: follow symbolic links, never loop, never stop on one bad folder.

Every entry that cannot be used (an unreadable folder, a broken link, a link loop, a device
file) becomes a :class:`~medseq.io.cohort.Skipped` with a reason instead of an exception.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medseq.io.cohort import SkipKind, Skipped


@dataclass
class WalkReport:
    """What the walk left out, filled while :func:`walk_files` runs."""

    skipped: list[Skipped] = field(default_factory=list)
    folders: int = 0


def walk_files(root: Path, report: WalkReport) -> Iterator[tuple[Path, int]]:
    """Yield ``(path, size)`` of every regular file under ``root``, each physical file once.

    Symbolic links to files and folders are followed; a folder already visited (a link loop,
    or a second link to the same folder) is not entered again, and a file reached through two
    paths is yielded once. Entries are visited in name order, so results are reproducible.
    """
    try:
        root_stat = root.stat()
    except OSError as err:
        report.skipped.append(Skipped(path=str(root), reason=_os_reason(err, "cannot read")))
        return
    seen_folders = {(root_stat.st_dev, root_stat.st_ino)}
    seen_files: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        report.folders += 1
        try:
            with os.scandir(folder) as iterator:
                entries = sorted(iterator, key=lambda entry: entry.name)
        except OSError as err:
            report.skipped.append(Skipped(path=str(folder), kind=SkipKind.FOLDER,
                                          reason=_os_reason(err, "cannot list folder")))
            continue
        subfolders: list[Path] = []
        for entry in entries:
            path = Path(entry.path)
            try:
                info = os.stat(entry.path)  # follows links; raises on loops and broken links
            except OSError as err:
                report.skipped.append(Skipped(path=str(path), reason=_link_reason(entry, err)))
                continue
            key = (info.st_dev, info.st_ino)
            if _is_folder(info):
                if key in seen_folders:
                    if entry.is_symlink():
                        report.skipped.append(Skipped(
                            path=str(path), kind=SkipKind.FOLDER,
                            reason="symbolic link to a folder already scanned (a link loop or "
                            "a second path to it): not followed again"))
                    continue
                seen_folders.add(key)
                subfolders.append(path)
            elif _is_file(info):
                if key in seen_files:
                    continue  # the same file through another link: read once
                seen_files.add(key)
                yield path, info.st_size
            else:
                report.skipped.append(Skipped(
                    path=str(path), reason="not a regular file or folder (device, pipe or socket)"))
        stack.extend(reversed(subfolders))


def _is_folder(info: os.stat_result) -> bool:
    return stat.S_ISDIR(info.st_mode)


def _is_file(info: os.stat_result) -> bool:
    return stat.S_ISREG(info.st_mode)


def _link_reason(entry: os.DirEntry[str], err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symbolic link loop: the link resolves to itself"
    if entry.is_symlink() and err.errno == errno.ENOENT:
        return "broken symbolic link: its target does not exist"
    return _os_reason(err, "cannot read")


def _os_reason(err: OSError, action: str) -> str:
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"{action}: permission denied"
    return f"{action}: {err.strerror or type(err).__name__}"
