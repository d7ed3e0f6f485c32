"""Rendering on a local Ray (2 CPUs, started once per session): the same clips as a local render, faults
(a worker killed mid-shot, a shot that keeps failing, a user error), each person encoded once."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from storyreel.cluster import RayOptions
from storyreel.runner import RenderOptions, StoryReport, render_stories
from tests.helpers.projects import make_library, make_project
from tests.helpers.ray_hooks import encodes

pytestmark = pytest.mark.slow


def _render(paths: list[Path], **options) -> list[StoryReport]:
    return render_stories(paths, RenderOptions(**options), Console(file=io.StringIO(), width=200))


def _on_ray(paths: list[Path], attempts: int = 3, **options) -> list[StoryReport]:
    return _render(paths, ray=RayOptions(attempts=attempts), **options)


def _copies(stories: list[Path], folder: Path) -> list[Path]:
    """Fresh copies of the projects (nothing rendered) for a local reference render."""
    copies = []
    for story in stories:
        root = folder / story.parent.name
        shutil.copytree(story.parent, root, ignore=shutil.ignore_patterns("renders", ".storyreel", "*.mp4"))
        copies.append(root / "story.yaml")
    return copies


def _outputs(story: Path) -> dict[str, bytes]:
    root = story.parent
    return {p.name: p.read_bytes() for p in [*sorted((root / "renders").glob("*.mp4")), root / "reel.mp4"]}


def _stages(cluster) -> list[Path]:
    return list(cluster.tmp.glob("storyreel-ray-*"))


def test_preview_batch_matches_a_local_render_and_resumes(
    local_ray, tmp_path_factory, tmp_path: Path
) -> None:
    stories = [
        make_project(tmp_path_factory, tmp_path / "ray" / "a", shots=2),
        make_project(tmp_path_factory, tmp_path / "ray" / "b", shots=3),
    ]
    local = _copies(stories, tmp_path / "local")
    reports = _on_ray(stories)
    assert [sorted(r.rendered) for r in reports] == [["s1", "s2"], ["s1", "s2", "s3"]]
    assert all(r.reel is not None and r.status == "ok" for r in reports)
    _render(local)
    for on_ray, here in zip(stories, local, strict=True):
        assert _outputs(on_ray) == _outputs(here)  # clips and reels, byte for byte
    meta = json.loads((stories[1].parent / "renders" / "s3.json").read_text())
    assert meta["ray_worker"] in (0, 1) and meta["pid"] != os.getpid()
    assert meta["job"]["photos"]["nora"] == [str(stories[1].parent / "cast" / "nora" / "1.jpg")]
    again = _on_ray(stories)
    assert [r.rendered for r in again] == [[], []] and all(r.reel_note == "reel up to date" for r in again)
    assert not _stages(local_ray)  # the workers removed their staging folders


def test_tiny_model_batch_encodes_each_person_once(
    local_ray, tiny_model_dir: Path, tmp_path_factory, tmp_path: Path
) -> None:
    import torch

    story = {"shots": 2, "engine": "ingredients", "steps": 2}
    stories = [make_project(tmp_path_factory, tmp_path / "ray" / name, **story) for name in ("a", "b")]
    local = _copies(stories, tmp_path / "local")
    before = encodes(local_ray.encodes)
    reports = _on_ray(stories, model=tiny_model_dir)
    assert [sorted(r.rendered) for r in reports] == [["s1", "s2"], ["s1", "s2"]]
    # nora, sam and eileen, one photo each, in both projects: three encodes on the whole cluster
    assert encodes(local_ray.encodes) - before == 3
    records = [json.loads(p.read_text()) for s in stories for p in (s.parent / "renders").glob("s*.json")]
    assert all(r["details"]["identity_cache_misses"] == 0 for r in records)
    for story in stories:  # the driver keeps the entries: a later render finds them
        assert len(list((story.parent / ".storyreel" / "cache" / "identities").glob("*/*.json"))) == 3
        assert len(list((story.parent / ".storyreel" / "cache" / "text").glob("*.json"))) == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (1 CPU each): the same arithmetic
    try:
        _render(local, model=tiny_model_dir)
    finally:
        torch.set_num_threads(threads)
    for on_ray, here in zip(stories, local, strict=True):
        assert _outputs(on_ray) == _outputs(here)


def test_a_story_mixing_engines_renders_on_ray_as_locally(
    local_ray, tiny_model_dir: Path, tiny_wan_dir: Path, tmp_path_factory, tmp_path: Path
) -> None:
    import torch

    story = make_project(tmp_path_factory, tmp_path / "ray" / "mix", shots=2, engine="ingredients", steps=2)
    story.write_text(
        story.read_text().replace(
            "    caption: Caption 2\n", "    caption: Caption 2\n    engine: wan-vace\n"
        )
    )
    (local,) = _copies([story], tmp_path / "local")
    (report,) = _on_ray([story], model=tiny_model_dir, wan_model=tiny_wan_dir)
    assert sorted(report.rendered) == ["s1", "s2"] and report.engine == "ingredients, wan-vace"
    records = {p.stem: json.loads(p.read_text()) for p in (story.parent / "renders").glob("s*.json")}
    assert records["s2"]["engine"] == "wan-vace" and records["s2"]["details"]["reference_cache_misses"] == 0
    assert len(list((story.parent / ".storyreel" / "cache" / "references").glob("*/*.png"))) == 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (1 CPU each): the same arithmetic
    try:
        _render([local], model=tiny_model_dir, wan_model=tiny_wan_dir)
    finally:
        torch.set_num_threads(threads)
    assert _outputs(story) == _outputs(local)


def test_library_members_are_encoded_once_into_the_library(
    local_ray, tiny_model_dir: Path, tmp_path_factory, tmp_path: Path
) -> None:
    import torch

    library = make_library(tmp_path_factory, tmp_path / "library")
    story = {"shots": 2, "engine": "ingredients", "steps": 2, "from_library": ("nora",)}
    stories = [make_project(tmp_path_factory, tmp_path / "ray" / name, **story) for name in ("a", "b")]
    local = _copies(stories, tmp_path / "local")
    before = encodes(local_ray.encodes)
    reports = _on_ray(stories, model=tiny_model_dir, cast_library=library)
    assert [sorted(r.rendered) for r in reports] == [["s1", "s2"], ["s1", "s2"]]
    assert encodes(local_ray.encodes) - before == 3  # nora (from the library), sam and eileen
    assert len(list((library / ".storyreel" / "cache" / "identities").glob("*/*.json"))) == 1  # nora
    for path in stories:  # sam and eileen stay in each project's cache
        assert len(list((path.parent / ".storyreel" / "cache" / "identities").glob("*/*.json"))) == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _render(local, model=tiny_model_dir, cast_library=library)
    finally:
        torch.set_num_threads(threads)
    for on_ray, here in zip(stories, local, strict=True):
        assert _outputs(on_ray) == _outputs(here)


def _killer(cluster, shot: str | None, stop: threading.Event, killed: list) -> threading.Thread:
    """Kill (SIGKILL, by pid) each worker seen writing ``shot``'s clip (any shot if None), once each;
    with ``shot=None`` only the first."""

    def run() -> None:
        while not stop.is_set():
            for partial in cluster.tmp.glob("storyreel-ray-*/clips/*.mp4.partial"):
                pid, shot_id = int(partial.parent.parent.name.split("-")[2]), partial.name.split(".")[0]
                if (shot is None or shot_id == shot) and pid not in [k[0] for k in killed]:
                    os.kill(pid, signal.SIGKILL)
                    killed.append((pid, shot_id))
                    if shot is None:
                        return
            time.sleep(0.005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_mid_shot_is_retried_elsewhere(local_ray, tmp_path_factory, tmp_path: Path) -> None:
    story = make_project(tmp_path_factory, tmp_path / "ray" / "k", shots=4, seconds=3.0, size="480x320")
    (local,) = _copies([story], tmp_path / "local")
    stop, killed = threading.Event(), []
    thread = _killer(local_ray, None, stop, killed)
    try:
        (report,) = _on_ray([story])
    finally:
        stop.set()
        thread.join()
    assert len(killed) == 1, "no worker was caught mid-shot"
    pid, shot = killed[0]
    assert sorted(report.rendered) == ["s1", "s2", "s3", "s4"] and not report.failures  # each shot once
    assert json.loads((story.parent / "renders" / f"{shot}.json").read_text())["pid"] != pid
    assert report.reel is not None and not list(story.parent.rglob("*.partial"))
    _render([local])
    assert _outputs(story) == _outputs(local)


def test_failing_shots_are_reported_and_the_rest_completes(local_ray, tmp_path_factory, tmp_path) -> None:
    story = make_project(tmp_path_factory, tmp_path / "ray" / "f", shots=3, seconds=2.0, size="320x192")
    Image.new("RGB", (256, 256), (90, 120, 160)).save(story.parent / "cast" / "eileen" / "1.jpg")  # no face
    stop, killed = threading.Event(), []
    thread = _killer(local_ray, "s1", stop, killed)  # s1 dies with its worker every time
    try:
        (report,) = _on_ray([story], attempts=2, keep_going=True)
    finally:
        stop.set()
        thread.join()
    failed = {f.shot_id: f.message for f in report.failures}
    assert report.rendered == ["s3"] and sorted(failed) == ["s1", "s2"] and report.status == "failed"
    assert len(killed) == 2 and "its worker died" in failed["s1"]
    assert "failed 2 times" in failed["s1"]
    assert "no face found" in failed["s2"]  # a user error: reported at once, not retried
    assert report.reel is None and "s1, s2" in report.reel_note
    renders = story.parent / "renders"
    assert sorted(p.name for p in renders.iterdir() if p.is_file()) == ["s3.json", "s3.mp4"]
    assert len(list((renders / "clips").iterdir())) == 2  # the store: s3's clip and record


def test_fail_fast_sends_no_shot_after_a_failure(local_ray, tmp_path_factory, tmp_path) -> None:
    story = make_project(tmp_path_factory, tmp_path / "ray" / "ff", shots=6, seconds=2.0, size="320x192")
    Image.new("RGB", (256, 256), (90, 120, 160)).save(story.parent / "cast" / "eileen" / "1.jpg")  # no face
    (report,) = _on_ray([story], keep_going=False)
    failed = [f.shot_id for f in report.failures]
    assert len(failed) == 1 and "no face found" in report.failures[0].message
    # s1 and s2 go out first (one per worker); after s2 fails nothing else is sent (at most one more shot
    # was on its way): without fail-fast s4 and s6 fail too and all six are tried
    assert len(report.rendered) + len(failed) <= 3 and report.status == "failed"
    renders = story.parent / "renders"
    assert {p.stem for p in renders.glob("*.json")} == set(report.rendered)


def test_ctrl_c_stops_the_workers_and_a_rerun_renders_the_rest(local_ray, tmp_path_factory, tmp_path) -> None:
    from storyreel.locking import ProjectLock

    story = make_project(tmp_path_factory, tmp_path / "ray" / "c", shots=6, seconds=2.0, size="320x192")
    renders = story.parent / "renders"
    stop = threading.Event()

    def interrupt() -> None:  # Ctrl-C once the first clip is in
        while not stop.is_set() and not list(renders.glob("*.json")):
            time.sleep(0.005)
        if not stop.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            _on_ray([story])
    finally:
        stop.set()
        thread.join()
    pids = [int(p.name.split("-")[2]) for p in _stages(local_ray)]
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids and not any(_alive(pid) for pid in pids)  # the workers were stopped, not left running
    done = {p.stem for p in renders.glob("*.json")}
    assert 1 <= len(done) < 6 and not list(story.parent.rglob("*.partial"))
    with ProjectLock(story.parent / ".storyreel" / "lock", wait=0):  # released
        pass
    (report,) = _on_ray([story])
    assert sorted(report.rendered) == sorted({f"s{i}" for i in range(1, 7)} - done)
    assert report.reel is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
