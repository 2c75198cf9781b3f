"""Files written whole or not at all, and file digests: the one helper every writer of artifacts uses.

A reader (another process, the next run after a crash or a Ctrl-C) must never find half a weights file,
engine, checkpoint or plugin under its final name, so everything is written to a temporary name in the
same folder, flushed to disk and renamed over the target (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it to ``path``, on error remove it.
    A ``path`` that exists and is not a regular file (a device such as /dev/null, a folder, a FIFO) is refused
    with IsADirectoryError/OSError: a rename would replace it."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise OSError(errno.EISDIR if path.is_dir() else errno.EINVAL,
                      "a folder" if path.is_dir() else "not a regular file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = beside(path, f".{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


NAME_MAX = 255  # bytes of one file name (ext4, XFS, APFS, NTFS in UTF-16 units)


def beside(path: Path, tail: str, room: int = 0, keep_ext: bool = True) -> Path:
    """A hidden name for ``path`` in its folder (a temporary file, a work folder): ``.NAME`` + ``tail``, or, where
    that and ``room`` bytes more (what is added to it later, as a lock file's ``.lock``) would be longer than a
    file name may be (an anime episode's 82-character Japanese title is 246 bytes), a digest of the name, keeping
    its extension where ``keep_ext`` (a temporary file's format is known by it); the name as given could be
    written, so this one must be too."""
    name = f".{path.name}{tail}"
    if len(os.fsencode(name)) + room > NAME_MAX:
        name = f".{hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]}{tail}{path.suffix if keep_ext else ''}"
    return path.with_name(name)


def write_atomic(path: str | Path, data: bytes | bytearray | memoryview | str) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)


@dataclass(frozen=True)
class Walk:
    """A folder as a folder run reads it (``walk``)."""

    files: list[Path]  # the visible files, sorted
    folders: dict[Path, Path]  # each real folder read, with the path it is reached by; a broken link's target too


def walk(folder: str | Path) -> Walk:
    """The files under ``folder``, sorted, without hidden ones or those in hidden folders (``.git``, macOS's
    ``._name`` resource forks, our own partial outputs), and the real folders they are read from. Linked folders
    are followed (a season folder of links into a library), each real folder once (a link back up would loop); a
    broken link is not a file, but its target counts as a folder read: the run may make it (OUT), and the next run
    would then read it. One walk gives a folder run both (its inputs, and where its OUT must not be)."""
    root = Path(folder)
    folders: dict[Path, Path] = {}
    found = []
    for here, dirs, files in os.walk(root, followlinks=True):
        real = Path(os.path.realpath(here))
        if real in folders:
            dirs[:] = []
            continue
        folders[real] = Path(here)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = Path(here) / name
            if path.is_file():
                found.append(path)
            elif path.is_symlink() and not path.exists():
                folders.setdefault(Path(os.path.realpath(path)), path)
    return Walk(sorted(found), folders)


def visible_files(folder: str | Path) -> list[Path]:
    """``walk(folder)``'s files: every visible file under ``folder``, sorted."""
    return walk(folder).files


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (streamed by ``hashlib.file_digest``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
