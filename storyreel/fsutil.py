"""Files on disk: atomic writes (a unique ``*.partial`` next to the target, fsync, rename), content
hashes, what kind of file a path is, and the one message for a full disk."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storyreel.errors import StoryreelError

PARTIAL_SUFFIX = ".partial"
RACY_SECONDS = 2.0
"""Files modified more recently than this are hashed again on every call: a second change within the
file system's timestamp resolution could otherwise keep the same size and mtime (git's "racy clean")."""
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

_digests: dict[tuple[str, int, int, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (hex), memoised on its path, inode, size and timestamps.

    The one way storyreel hashes files (photos for job keys and caches, clips, the story for the reel
    record). Raises OSError like ``open`` when the file cannot be read.
    """
    path = Path(path)
    info = path.stat()
    memo = (str(path.absolute()), info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    digest = _digests.get(memo)
    if digest is None:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if time.time() - info.st_mtime > RACY_SECONDS:
            _digests[memo] = digest
    return digest


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device (like /dev/zero)"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(path: Path) -> str | None:
    """What ``path`` is when it exists but is not a regular file (``"a named pipe (FIFO)"``, ``"a
    folder"``, …), following symlinks; None for a regular file or a path that cannot be looked at.

    Only ``stat`` is used: a FIFO is never opened, so asking never blocks.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), None)


DISK_FULL_TEXT = "No space left on device"
"""How the C library (and so ffmpeg) says ENOSPC."""
_PARTIAL_RE = re.compile(r"\.[0-9a-f]{12}" + re.escape(PARTIAL_SUFFIX) + "$")


def disk_full_error(path: Path | str) -> StoryreelError:
    """The one message for a full disk (or an exceeded quota) while writing ``path`` (a temporary
    ``*.partial`` name is shown as the file it stands for)."""
    path = Path(_PARTIAL_RE.sub("", str(path)))
    folder = path.parent
    return StoryreelError(
        f"no space left on the disk while writing {path}",
        hint=f"free some space on the disk of {folder} (see `df -h {folder}`) and run the same command "
        "again: finished files are kept",
    )


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` is an OSError saying the disk (or the user's quota) is full."""
    return isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS


def partial_name(path: Path) -> Path:
    """A new, unique temporary name next to ``path`` (``<name>.<random>.partial``): two processes
    writing the same file never share one."""
    return path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a unique temporary path to write; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left untouched. A full disk becomes
    :func:`disk_full_error`; a folder standing where the file should go is refused with a clear message.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise StoryreelError(
            f"{path} is a folder, so the file of that name cannot be written",
            hint=f"move or delete the folder {path}, then run the same command again",
        )
    tmp = partial_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(path) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented, key-sorted JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def clear_folder_in_way(path: Path) -> bool:
    """Remove a folder standing where a file of storyreel's own (a cache entry) goes; True if one was."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
        return True
    return False


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing, unreadable, not JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def link_file(source: Path, target: Path) -> None:
    """Make ``target`` the same file as ``source`` atomically: a hard link (no extra disk space), or a
    copy where the file system has no hard links; an existing ``target`` is replaced."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and os.path.samefile(source, target):
        return
    tmp = partial_name(target)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(target) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)
