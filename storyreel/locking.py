"""Who may render a project: a project lock (fcntl) and per-shot claim files with leases.

* :class:`ProjectLock` — ``.storyreel/lock``, an ``fcntl.flock`` lock. A normal ``storyreel render`` holds it
  exclusively; independent workers (``--worker``) hold it shared, so workers coexist with each other but
  never with a normal render. The kernel drops the lock when its process dies, so it cannot go stale.
  Holders describe themselves in ``.storyreel/holders/<host>-<pid>.json`` so a refused render can say who
  is in the way.
* :class:`ClaimBoard` — ``.storyreel/claims/<shot>.json`` created with ``O_EXCL``: the shot's owner, host,
  pid and lease expiry. The owner renews the lease while it renders (:meth:`Claim.keep_alive`); a claim
  whose lease expired, or whose owner is a dead process on this host, can be taken over. Several workers
  on one shared folder (even on several machines) therefore never render the same shot twice.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from storyreel.errors import StoryreelError

DEFAULT_LEASE_SECONDS = 120.0
"""How long a worker's claim on a shot lasts without renewal."""
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


@dataclass
class ProjectLock:
    """An fcntl lock on ``path``: exclusive for a normal render, shared for ``--worker`` renders.

    ``wait`` is how long :meth:`acquire` waits for other holders before refusing with a
    :class:`StoryreelError` naming them; ``on_wait`` is called once with their description when it has
    to wait.
    """

    path: Path
    shared: bool = False
    wait: float = DEFAULT_WAIT_SECONDS
    poll: float = 0.2
    on_wait: Callable[[str], None] | None = None
    _fd: int | None = field(default=None, init=False, repr=False)
    _holder_file: Path | None = field(default=None, init=False, repr=False)

    @property
    def holders_dir(self) -> Path:
        return self.path.parent / "holders"

    @property
    def mode(self) -> str:
        return "shared worker" if self.shared else "exclusive"

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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        flag = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
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
                        "wait for it to finish or pass --wait SECONDS to wait longer; several independent "
                        "workers can share a project with `storyreel render --worker` (all of them need it). "
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
        if not self.shared:  # we are alone: records left by killed processes are stale
            for entry in self.holders_dir.glob("*.json"):
                entry.unlink(missing_ok=True)
        record = {"pid": os.getpid(), "host": _host(), "mode": self.mode, "started": time.time()}
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


@dataclass
class Claim:
    """A shot claimed by this process; renew it while rendering, release it when done."""

    board: ClaimBoard
    shot_id: str
    token: str

    @property
    def path(self) -> Path:
        return self.board.claim_path(self.shot_id)

    def renew(self) -> bool:
        """Extend the lease; False when the claim was taken over by someone else (our lease had expired)."""
        info = _read_json(self.path)
        if info is None or info.get("token") != self.token:
            return False
        _write_json_replace(self.path, self.board.record(self.shot_id, self.token))
        return True

    def release(self) -> None:
        """Remove the claim file if it is still ours."""
        info = _read_json(self.path)
        if info is not None and info.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def keep_alive(self) -> Iterator[Claim]:
        """Renew the lease in a background thread (every third of the lease) until the block ends."""
        stop = threading.Event()

        def renew_loop() -> None:
            while not stop.wait(self.board.lease / 3):
                if not self.renew():
                    return

        thread = threading.Thread(target=renew_loop, name=f"lease-{self.shot_id}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()


@dataclass
class ClaimBoard:
    """Per-shot claim files in ``directory`` (``.storyreel/claims``) with leases of ``lease`` seconds.

    Expiry compares wall clocks, so machines sharing a folder need roughly synchronised clocks (NTP).
    """

    directory: Path
    lease: float = DEFAULT_LEASE_SECONDS
    owner: str = field(default_factory=lambda: f"{_host()}:{os.getpid()}")

    def claim_path(self, shot_id: str) -> Path:
        return self.directory / f"{shot_id}.json"

    def record(self, shot_id: str, token: str) -> dict:
        now = time.time()
        return {
            "shot": shot_id,
            "owner": self.owner,
            "token": token,
            "host": _host(),
            "pid": os.getpid(),
            "claimed": now,
            "expires": now + self.lease,
        }

    def holder(self, shot_id: str) -> dict | None:
        """The current claim record of ``shot_id`` (None when unclaimed)."""
        return _read_json(self.claim_path(shot_id))

    def is_stale(self, info: dict | None, path: Path | None = None) -> bool:
        """A claim is stale when its lease expired or its owner is a dead process on this host.

        An unreadable claim file is stale once it is older than a lease (a fresh one may be mid-write).
        """
        if info is None:
            try:
                return path is None or time.time() - path.stat().st_mtime > self.lease
            except OSError:
                return True
        expires = info.get("expires")
        return not isinstance(expires, int | float) or expires < time.time() or _is_dead_local(info)

    def try_claim(self, shot_id: str) -> Claim | None:
        """Claim ``shot_id``: a new claim file (O_EXCL) or the takeover of a stale one; None if taken."""
        self.directory.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        path = self.claim_path(shot_id)
        data = (json.dumps(self.record(shot_id, token), indent=2, sort_keys=True) + "\n").encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return self._take_over(shot_id, token)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return Claim(self, shot_id, token)

    def _take_over(self, shot_id: str, token: str) -> Claim | None:
        path = self.claim_path(shot_id)
        if not self.is_stale(_read_json(path), path):
            return None
        # Only one process may replace a stale claim: the takeover itself is guarded by an O_EXCL file.
        guard = path.with_name(path.name + ".takeover")
        try:
            os.close(os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - guard.stat().st_mtime > self.lease:  # a taker that died mid-takeover
                    guard.unlink()
            return None
        try:
            if not self.is_stale(_read_json(path), path):  # renewed or taken meanwhile
                return None
            _write_json_replace(path, self.record(shot_id, token))
            return Claim(self, shot_id, token)
        finally:
            guard.unlink(missing_ok=True)
