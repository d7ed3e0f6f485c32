"""Project lock (fcntl) and per-shot claims with leases: who may render what, and taking over dead claims."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from storyreel.errors import StoryreelError
from storyreel.locking import ClaimBoard, ProjectLock


def test_exclusive_lock_refuses_a_second_holder_naming_it(tmp_path: Path) -> None:
    path = tmp_path / ".storyreel" / "lock"
    with ProjectLock(path):
        with pytest.raises(StoryreelError) as err:
            ProjectLock(path, wait=0.3).acquire()
        assert f"pid {os.getpid()} on host {socket.gethostname()} (exclusive" in err.value.message
        assert "--wait" in (err.value.hint or "")
    with ProjectLock(path, wait=0):  # released on exit
        pass
    assert not list((path.parent / "holders").iterdir())


def test_waiting_for_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    first = ProjectLock(path)
    first.acquire()
    threading.Timer(0.5, first.release).start()
    said: list[str] = []
    started = time.monotonic()
    with ProjectLock(path, wait=10, on_wait=said.append):
        assert 0.4 < time.monotonic() - started < 5
    assert len(said) == 1 and said[0].startswith("waiting up to 10 s for pid")


def test_workers_share_but_exclude_a_normal_render(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    with (
        ProjectLock(path, shared=True),
        ProjectLock(path, shared=True),
        pytest.raises(StoryreelError, match="shared worker"),
    ):
        ProjectLock(path, wait=0).acquire()
    with ProjectLock(path), pytest.raises(StoryreelError, match="exclusive"):
        ProjectLock(path, shared=True, wait=0).acquire()


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    code = (
        "import sys, time; from pathlib import Path; from storyreel.locking import ProjectLock;"
        f"ProjectLock(Path({str(path)!r})).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(StoryreelError, match=f"pid {child.pid}"):
            ProjectLock(path, wait=0).acquire()
    finally:
        child.kill()
        child.wait()
    with ProjectLock(path, wait=2):  # the kernel dropped the lock; the stale holder record is ignored
        pass


def test_claims_are_exclusive_until_released(tmp_path: Path) -> None:
    a, b = ClaimBoard(tmp_path, owner="a"), ClaimBoard(tmp_path, owner="b")
    claim = a.try_claim("s1")
    assert claim is not None and b.try_claim("s1") is None
    assert b.holder("s1")["owner"] == "a" and b.holder("s1")["pid"] == os.getpid()
    assert b.try_claim("s2") is not None
    claim.release()
    assert b.try_claim("s1") is not None


def test_expired_leases_are_taken_over(tmp_path: Path) -> None:
    a, b = ClaimBoard(tmp_path, lease=0.3, owner="a"), ClaimBoard(tmp_path, lease=0.3, owner="b")
    old = a.try_claim("s1")
    assert old is not None and b.try_claim("s1") is None
    time.sleep(0.45)
    new = b.try_claim("s1")
    assert new is not None and b.holder("s1")["owner"] == "b"
    assert not old.renew()  # the old owner learns it lost the shot
    old.release()  # and cannot remove the new owner's claim
    assert b.holder("s1")["token"] == new.token


def test_a_renewed_lease_is_not_taken_over(tmp_path: Path) -> None:
    a, b = ClaimBoard(tmp_path, lease=0.3, owner="a"), ClaimBoard(tmp_path, lease=0.3, owner="b")
    claim = a.try_claim("s1")
    with claim.keep_alive():
        for _ in range(6):
            time.sleep(0.15)
            assert b.try_claim("s1") is None
    claim.release()
    assert b.try_claim("s1") is not None


def test_claims_of_dead_local_processes_are_taken_over_at_once(tmp_path: Path) -> None:
    code = "import os; print(os.getpid())"
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    record = {"shot": "s1", "owner": "gone", "token": "x", "host": socket.gethostname(),
              "pid": int(dead.stdout), "expires": time.time() + 3600}  # fmt: skip
    (tmp_path / "s1.json").write_text(json.dumps(record))
    assert ClaimBoard(tmp_path).try_claim("s1") is not None


def test_fresh_unreadable_claims_are_respected_old_ones_not(tmp_path: Path) -> None:
    board = ClaimBoard(tmp_path, lease=60)
    (tmp_path / "s1.json").write_text("")  # someone is writing it right now
    assert board.try_claim("s1") is None
    old = time.time() - 120
    os.utime(tmp_path / "s1.json", (old, old))
    assert board.try_claim("s1") is not None


def test_only_one_of_many_takes_over_an_expired_claim(tmp_path: Path) -> None:
    ClaimBoard(tmp_path, lease=0.05, owner="dead").try_claim("s1")
    time.sleep(0.1)
    barrier = threading.Barrier(8)
    won: list[object] = []

    def contend(i: int) -> None:
        board = ClaimBoard(tmp_path, lease=60, owner=f"w{i}")
        barrier.wait()
        claim = board.try_claim("s1")
        if claim is not None:
            won.append(claim)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
