"""The project lock (fcntl): one render per project, the holder named, released when its process dies."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from storyreel.errors import StoryreelError
from storyreel.locking import ProjectLock


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


def test_a_folder_in_place_of_the_lock_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / ".storyreel" / "lock"
    (path / "inside").mkdir(parents=True)
    with pytest.raises(StoryreelError) as err:
        ProjectLock(path).acquire()
    assert err.value.message == f"{path} is a folder, not the lock file storyreel uses"
    assert f"rm -r {path}" in (err.value.hint or "") and "safe to delete" in (err.value.hint or "")
