"""The preview engine: a deterministic, moving storyboard panel, encoded at the reel's fps and size."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storyreel.engines.preview import Animatic, KenBurns, PreviewEngine, background
from storyreel.ffmpeg_tools import probe_video
from storyreel.plan import plan_story
from storyreel.project import Project
from storyreel.story import load_story
from tests.helpers.projects import make_project


def _job(path: Path, index: int = 0):
    story = load_story(path)
    return story, Project.from_story(story), plan_story(story, PreviewEngine().spec())[index]


def _faces() -> list[tuple[str, Image.Image]]:
    rng = np.random.default_rng(0)
    return [(n, Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))) for n in ("ana", "bo")]


def test_background_comes_from_the_prompt() -> None:
    a, b = background("a cafe at dawn", 64, 48), background("a cafe at dawn", 64, 48)
    c = background("a storm at sea", 64, 48)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.abs(np.asarray(a, float) - np.asarray(c, float)).mean() > 5


def test_camera_moves_gently_and_stays_inside_the_layer() -> None:
    for seed in range(20):
        camera = KenBurns.from_seed(seed)
        boxes = [camera.box(t, 720, 480, 1.12) for t in np.linspace(0, 1, 25)]
        for left, top, right, bottom in boxes:
            assert min(left, top) >= -1e-6
            assert right <= 720 * 1.12 + 1e-6 and bottom <= 480 * 1.12 + 1e-6
        widths = [b[2] - b[0] for b in boxes]
        assert 0.9 < min(widths) / max(widths) < 0.96  # a zoom of 4-10 %, never a jump


def test_animatic_frames_are_deterministic_and_move(tmp_path_factory, tmp_path: Path) -> None:
    _, _, job = _job(make_project(tmp_path_factory, tmp_path / "p", shots=1, seconds=2.0))
    first = Animatic(job, _faces())
    again = Animatic(job, _faces())
    frames = [np.asarray(first.frame(i)) for i in (0, job.frames // 2, job.frames - 1)]
    assert np.array_equal(frames[0], np.asarray(again.frame(0)))
    assert frames[0].shape == (job.height, job.width, 3)
    assert np.abs(frames[0].astype(int) - frames[2].astype(int)).mean() > 1  # the camera moved
    header = frames[0][: job.height // 8]
    assert header.mean() < frames[0][job.height // 3 :].mean()  # text sits on a dark header band


def test_render_writes_the_shot_at_the_reel_fps_and_size(tmp_path_factory, tmp_path: Path) -> None:
    _, project, job = _job(make_project(tmp_path_factory, tmp_path / "p", shots=2, seconds=1.5), 1)
    steps: list[tuple[int, int]] = []
    result = PreviewEngine().render(
        job, tmp_path / "s2.mp4", lambda d, t: steps.append((d, t)), project=project
    )
    info = probe_video(tmp_path / "s2.mp4")
    assert (info.width, info.height, info.fps, info.frames) == (160, 96, 12, 18)
    assert info.codec == "h264" and result.frames == 18 and result.peak_memory_kind == "rss"
    assert steps[-1] == (18, 18) and all(a[0] < b[0] for a, b in itertools.pairwise(steps))


@pytest.mark.slow
def test_a_six_second_720x480_shot_takes_about_a_second(tmp_path_factory, tmp_path: Path) -> None:
    path = make_project(tmp_path_factory, tmp_path / "p", shots=1, seconds=6.0, size="720x480", fps=24)
    _, project, job = _job(path)
    engine = PreviewEngine()
    engine.render(job, tmp_path / "warm.mp4", lambda d, t: None, project=project)
    started = time.perf_counter()
    engine.render(job, tmp_path / "s1.mp4", lambda d, t: None, project=project)
    seconds = time.perf_counter() - started
    assert probe_video(tmp_path / "s1.mp4").frames == 144
    assert seconds < 6.0, f"{seconds:.1f} s for 144 frames (about 1-1.5 s on an idle 2-core machine)"
