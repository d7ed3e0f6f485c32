"""Who may render a project: ``.storyreel/lock``, an exclusive ``fcntl.flock`` lock.

A render (local, ``--gpus N`` or the driver of a ``--ray`` render) holds it while it renders the project.
The kernel drops the lock when its process dies, so it cannot go stale. Holders describe themselves in
``.storyreel/holders/<host>-<pid>.json`` so a refused render can say who is in the way.

:func:`entry_lock` is an exclusive ``flock`` on one cache entry's ``<entry>.lock`` while a process builds
it, so concurrent renders build each cache entry once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from storyreel.errors import StoryreelError
from storyreel.fsutil import clear_folder_in_way, special_kind

DEFAULT_WAIT_SECONDS = 10.0
"""How long a render waits for another holder of the project lock before refusing."""


def _host() -> str:
    return socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_dead_local(info: dict) -> bool:
    """True when ``info`` names a process on this host that no longer exists."""
    pid = info.get("pid")
    return info.get("host") == _host() and isinstance(pid, int) and not _pid_alive(pid)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json_replace(path: Path, data: dict) -> None:
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def describe_holder(info: dict) -> str:
    """``pid 123 on host gpu-1 (exclusive, since 01:02:03 UTC)`` from a holder record."""
    since = time.strftime("%H:%M:%S UTC", time.gmtime(info.get("started", 0)))
    return (
        f"pid {info.get('pid', '?')} on host {info.get('host', '?')} ({info.get('mode', '?')}, since {since})"
    )


@contextlib.contextmanager
def entry_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (a cache entry's ``.lock`` file, created if needed) for the
    block. Cache folders are storyreel's own: a folder standing at ``path`` is removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_folder_in_way(path)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class ProjectLock:
    """An exclusive fcntl lock on ``path``.

    ``wait`` is how long :meth:`acquire` waits for other holders before refusing with a
    :class:`StoryreelError` naming them; ``on_wait`` is called once with their description when it has
    to wait.
    """

    path: Path
    wait: float = DEFAULT_WAIT_SECONDS
    poll: float = 0.2
    on_wait: Callable[[str], None] | None = None
    _fd: int | None = field(default=None, init=False, repr=False)
    _holder_file: Path | None = field(default=None, init=False, repr=False)

    @property
    def holders_dir(self) -> Path:
        return self.path.parent / "holders"

    def holders(self) -> list[dict]:
        """Records of the processes that (may) hold the lock, dead local processes left out."""
        found = []
        for entry in sorted(self.holders_dir.glob("*.json")):
            info = _read_json(entry)
            if info is not None and not _is_dead_local(info):
                found.append(info)
        return found

    def acquire(self) -> None:
        """Take the lock, waiting up to ``wait`` seconds; raise StoryreelError naming the holders if busy."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            kind = special_kind(self.path)
            what = f"is {kind}, not the lock file storyreel uses" if kind else f"cannot be opened ({err})"
            raise StoryreelError(
                f"{self.path} {what}",
                hint=f"remove it (`rm -r {self.path}`; everything in {self.path.parent} is safe to delete), "
                "then run the same command again",
            ) from None
        flag = fcntl.LOCK_EX | fcntl.LOCK_NB
        deadline = time.monotonic() + max(self.wait, 0.0)
        announced = False
        while True:
            try:
                fcntl.flock(fd, flag)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            who = "; ".join(describe_holder(h) for h in self.holders()) or "another storyreel process"
            if time.monotonic() >= deadline:
                os.close(fd)
                raise StoryreelError(
                    f"project {self.path.parent.parent} is being rendered by {who}",
                    hint=(
                        "wait for it to finish or pass --wait SECONDS to wait longer; to render on several "
                        "machines, start one render with --ray (see README, Cluster). "
                        "The lock is released by the kernel as soon as that process exits."
                    ),
                )
            if not announced and self.on_wait is not None:
                self.on_wait(f"waiting up to {self.wait:g} s for {who}")
                announced = True
            time.sleep(self.poll)
        self._fd = fd
        self._register()

    def _register(self) -> None:
        self.holders_dir.mkdir(parents=True, exist_ok=True)
        for entry in self.holders_dir.glob("*.json"):  # we are alone: records left by killed processes
            entry.unlink(missing_ok=True)
        record = {"pid": os.getpid(), "host": _host(), "mode": "exclusive", "started": time.time()}
        self._holder_file = self.holders_dir / f"{record['host']}-{record['pid']}.json"
        _write_json_replace(self._holder_file, record)

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._holder_file is not None:
            self._holder_file.unlink(missing_ok=True)
            self._holder_file = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
