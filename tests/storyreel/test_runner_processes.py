"""The runner across processes: kill -9 and SIGTERM mid-render, accelerate splitting, concurrent renders
of one project. Each test runs real `python -m storyreel render` subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from storyreel.ffmpeg_tools import probe_video
from storyreel.locking import ProjectLock
from tests.helpers.projects import REPO, make_project, snapshot, storyreel

pytestmark = pytest.mark.slow


def _popen(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "storyreel", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _wait_mid_render(renders: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Return once one clip is finished and the next is being written (a .partial exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if list(renders.glob("*.json")) and list(renders.rglob("*.mp4.*.partial")):  # clips/: the store
            return
        time.sleep(0.01)
    raise AssertionError("the render never got to its second shot")


def _rendered_lines(*outputs: str) -> Counter:
    return Counter(re.findall(r"✓ \S+story\.yaml: (s\d+)", "\n".join(outputs)))


def _check_reel(root: Path, shots: int, seconds: float) -> None:
    reel = probe_video(root / "reel.mp4")
    assert reel.duration == pytest.approx(shots * seconds, abs=0.25)
    assert not list(root.rglob("*.partial"))


@pytest.fixture
def long_project(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return make_project(tmp_path_factory, tmp_path / "demo", shots=4, seconds=4.0, size="480x320", fps=24)


def test_kill_9_mid_render_then_resume(long_project: Path) -> None:
    renders = long_project.parent / "renders"
    proc = _popen("render", str(long_project))
    _wait_mid_render(renders, proc)
    proc.kill()
    proc.communicate()
    done = {p.stem for p in renders.glob("*.json")}
    assert 1 <= len(done) < 4 and list(renders.rglob("*.partial"))  # killed for real, in the middle
    before = snapshot(renders, "*.json") | snapshot(renders, "*.mp4")
    result = storyreel("render", str(long_project))
    assert result.returncode == 0, result.stderr
    rendered = _rendered_lines(result.stderr)  # notices: stderr, each naming its story
    assert set(rendered) == {"s1", "s2", "s3", "s4"} - done and set(rendered.values()) == {1}
    after = snapshot(renders, "*.json") | snapshot(renders, "*.mp4")
    assert {name: after[name] for name in before} == before  # finished clips: same bytes, same mtime
    _check_reel(long_project.parent, 4, 4.0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_stop_cleanly(long_project: Path, signum: int) -> None:
    renders = long_project.parent / "renders"
    proc = _popen("render", str(long_project))
    _wait_mid_render(renders, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped: partial files removed" in err
    assert not list(long_project.parent.rglob("*.partial"))  # cleaned before exiting, not by the next run
    with ProjectLock(long_project.parent / ".storyreel" / "lock", wait=0):
        pass


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


@pytest.mark.skipif(_gpus() == 1, reason="--gpus 2 needs two GPUs, or none (then it runs 2 CPU processes)")
def test_two_accelerate_processes_split_the_shots(tmp_path_factory, tmp_path: Path) -> None:
    project = make_project(tmp_path_factory, tmp_path / "demo", shots=5)
    result = storyreel("render", str(project), "--gpus", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accelerate.commands.launch --num_processes 2" in result.stderr
    rendered = _rendered_lines(result.stderr)
    assert rendered == Counter({f"s{i}": 1 for i in range(1, 6)})  # every shot once: no overlap
    metas = (project.parent / "renders").glob("s*.json")
    owners = {p.stem: json.loads(p.read_text())["process_index"] for p in metas}
    assert owners == {"s1": 0, "s2": 1, "s3": 0, "s4": 1, "s5": 0}  # round robin over the todo list
    assert result.stdout.count("reel:") == 1  # process 0 assembles the reel after the barrier
    assert "5 rendered" in result.stdout
    _check_reel(project.parent, 5, 1.0)


def test_two_concurrent_renders_do_not_corrupt_the_project(tmp_path_factory, tmp_path: Path) -> None:
    project = make_project(tmp_path_factory, tmp_path / "demo", shots=4, seconds=2.0, size="320x192", fps=24)
    procs = [_popen("render", str(project), "--wait", "300") for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    stderr = [err for _, err in outputs]
    assert _rendered_lines(*stderr) == Counter({f"s{i}": 1 for i in range(1, 5)})
    assert sum("nothing to render" in err for err in stderr) == 1  # the second waited, then found all done
    _check_reel(project.parent, 4, 2.0)
    for meta in (project.parent / "renders").glob("s*.json"):
        assert json.loads(meta.read_text())["key"]


def test_a_second_render_refuses_naming_the_holder(tmp_path_factory, tmp_path: Path) -> None:
    project = make_project(tmp_path_factory, tmp_path / "demo", shots=1)
    with ProjectLock(project.parent / ".storyreel" / "lock"):
        result = storyreel("render", str(project), "--wait", "0.5")
    assert result.returncode == 1
    assert f"pid {os.getpid()}" in result.stderr and "--wait" in result.stderr
    assert "Traceback" not in result.stderr
