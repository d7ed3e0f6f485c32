"""The wan-vace engine on a tiny random Wan VACE folder, through diffusers' real pipeline on the CPU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from storyreel.engines.wan_vace import DEFAULT_NEGATIVE_PROMPT, WanVaceEngine, model_spec
from storyreel.ffmpeg_tools import ffmpeg_exe, probe_video
from storyreel.models.wan_vace import FOLDER_RECORD
from storyreel.models.wan_vace_tiny import TINY_NATIVE
from storyreel.plan import plan_story
from storyreel.project import Project
from storyreel.story import load_story
from tests.helpers.projects import make_library, make_project


def _frames(path: Path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def test_spec_comes_from_the_folder(tiny_wan_dir: Path, tmp_path: Path) -> None:
    spec = model_spec(tiny_wan_dir)
    assert (spec.width, spec.height, spec.fps, spec.max_frames, spec.frame_multiple) == (112, 64, 16, 17, 4)
    assert spec.generative and spec.orientable and not spec.router and spec.min_cast == 0
    assert spec.guidance == 5.0 and spec.model_revision
    released_like = Path(shutil.copytree(tiny_wan_dir, tmp_path / "m"))
    (released_like / FOLDER_RECORD).unlink()  # a folder downloaded without storyreel: Wan 2.1's 480p format
    spec = model_spec(released_like)
    assert (spec.width, spec.height, spec.fps, spec.max_frames) == (832, 480, 16, 81)


@pytest.mark.slow
def test_renders_people_as_references_deterministically(
    tiny_wan_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    path = make_project(tmp_path_factory, tmp_path / "p", shots=2, engine="preview", steps=2, seconds=0.5)
    story = load_story(path)
    project = Project.from_story(story)
    engine = WanVaceEngine(tiny_wan_dir, memory="none")
    jobs = plan_story(story, engine.spec())
    assert [(job.frames, job.fps, job.width, job.height) for job in jobs] == [
        (9, 16, 112, 64)
    ] * 2  # 8 → 4k+1
    engine.prepare([(job, project) for job in jobs])
    assert len(list(project.text_cache_dir.glob("*.safetensors"))) == 2
    assert engine.text_embeddings(jobs[0], project)[0].shape[1] == 512
    assert jobs[0].negative_prompt is None  # the story sets none: Wan's default negative prompt is used
    assert (
        engine._texts is not None
        and engine._texts.key(jobs[0].prompt, DEFAULT_NEGATIVE_PROMPT) in engine._texts.memory
    )
    steps: list[tuple[int, int]] = []
    result = engine.render(jobs[0], tmp_path / "a.mp4", lambda d, t: steps.append((d, t)), project=project)
    assert steps == [(1, 2), (2, 2)]
    info = probe_video(tmp_path / "a.mp4")
    assert (info.width, info.height, info.fps, info.frames) == (TINY_NATIVE.width, TINY_NATIVE.height, 16, 9)
    # prepare() cropped both people into the cache; the render reads them back
    assert result.details == {"reference_cache_hits": 2, "reference_cache_misses": 0, "references": 2}
    files = engine.cache_files(jobs[0], project)  # what a Ray render ships: 2 crops + 2 records, 1 prompt
    assert len(files) == 6 and all(path.is_file() for path in files)
    again = engine.render(jobs[0], tmp_path / "b.mp4", lambda d, t: None, project=project)
    assert again.details["reference_cache_hits"] == 2
    first = _frames(tmp_path / "a.mp4", TINY_NATIVE.width, TINY_NATIVE.height)
    assert np.array_equal(first, _frames(tmp_path / "b.mp4", TINY_NATIVE.width, TINY_NATIVE.height))
    engine.render(jobs[1], tmp_path / "c.mp4", lambda d, t: None, project=project)
    assert not np.array_equal(first, _frames(tmp_path / "c.mp4", TINY_NATIVE.width, TINY_NATIVE.height))
    versions = engine.versions()
    assert versions["variant"] == "tiny" and versions["model_revision"] == jobs[0].model_revision


def test_library_members_are_cropped_once_into_the_library(
    tiny_wan_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    library = make_library(tmp_path_factory, tmp_path / "library")
    cache = library / ".storyreel" / "cache" / "references"
    engine = WanVaceEngine(tiny_wan_dir, memory="none")
    for index, hits in enumerate((0, 1)):
        path = make_project(tmp_path_factory, tmp_path / f"p{index}", shots=1, from_library=("nora",))
        story = load_story(path, cast_library=library)
        project = Project.from_story(story)
        (job,) = plan_story(story, engine.spec())
        images, stats = engine.references(job, project)
        assert len(images) == 2 and stats == {
            "reference_cache_hits": hits,
            "reference_cache_misses": 2 - hits,
        }
        assert len(list(cache.glob("*/*.json"))) == 1  # nora's, in the library, for both projects
        assert len(list(project.reference_cache_dir.glob("*/*.json"))) == 1  # sam's
