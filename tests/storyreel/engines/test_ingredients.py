"""The ingredients engine on a tiny random model folder, through the real pipeline on the CPU."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from storyreel.engines.ingredients import IngredientsEngine, model_spec
from storyreel.ffmpeg_tools import ffmpeg_exe, probe_video
from storyreel.identity_cache import IdentityCache
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


def test_spec_comes_from_the_folder_configs(tiny_model_dir: Path) -> None:
    spec = model_spec(tiny_model_dir)
    assert (spec.width, spec.height, spec.fps, spec.max_frames, spec.frame_multiple) == (96, 64, 8, 9, 8)
    assert spec.generative and spec.model_revision and not spec.uses_caption


@pytest.mark.slow
def test_renders_through_the_real_pipeline_deterministically(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    path = make_project(tmp_path_factory, tmp_path / "p", shots=2, engine="ingredients", steps=2, seconds=6)
    story = load_story(path)
    project = Project.from_story(story)
    engine = IngredientsEngine(tiny_model_dir, memory="none")
    jobs = plan_story(story, engine.spec())
    assert [job.frames for job in jobs] == [9, 9]  # 6 s → 49 frames, clipped to the tiny model's 9
    engine.prepare([(job, project) for job in jobs])
    assert len(list(project.text_cache_dir.glob("*.safetensors"))) == 2  # both prompts encoded up front
    assert len(list(project.identity_cache_dir.glob("*/*.json"))) == 3  # and all three people
    needs = engine.cache_files(jobs[0], project)  # two people (tensors, face, metadata each), one prompt
    assert (
        sorted(p.relative_to(project.cache_dir).parts[0] for p in needs) == ["identities"] * 6 + ["text"] * 2
    )
    assert all(p.is_file() for job in jobs for p in engine.cache_files(job, project))
    steps: list[tuple[int, int]] = []
    result = engine.render(jobs[0], tmp_path / "a.mp4", lambda d, t: steps.append((d, t)), project=project)
    assert steps == [(1, 2), (2, 2)]
    info = probe_video(tmp_path / "a.mp4")
    assert (info.width, info.height, info.fps, info.frames) == (96, 64, 8, 9)
    assert result.peak_memory_bytes and result.details["identity_cache_misses"] == 0  # prepared
    again = engine.render(jobs[0], tmp_path / "b.mp4", lambda d, t: None, project=project)
    assert again.details["identity_cache_hits"] == 2
    first, second = _frames(tmp_path / "a.mp4", 96, 64), _frames(tmp_path / "b.mp4", 96, 64)
    assert np.array_equal(first, second)  # same job, same hardware → same frames
    engine.render(jobs[1], tmp_path / "c.mp4", lambda d, t: None, project=project)
    assert not np.array_equal(first, _frames(tmp_path / "c.mp4", 96, 64))
    assert engine.versions()["face_encoder"].startswith("tiny-")


def test_each_member_is_combined_as_the_story_says(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    path = make_project(tmp_path_factory, tmp_path / "p", shots=2, engine="ingredients")
    text = path.read_text()
    two_photos = "{photos: [cast/nora/1.jpg, cast/eileen/1.jpg]"
    path.write_text(text.replace("{photos: [cast/nora/1.jpg]", two_photos + ", combine: first"))
    engine = IngredientsEngine(tiny_model_dir, memory="none")
    story = load_story(path)
    project = Project.from_story(story)
    job = plan_story(story, engine.spec())[0]
    assert job.cast == ["nora", "sam"] and job.combine == {"nora": "first", "sam": "mean"}
    (nora, sam), stats = engine.identities(job, project)
    assert stats == {"identity_cache_hits": 0, "identity_cache_misses": 3}
    first = IdentityCache(project.identity_cache_dir, combine="first").get(story.cast["nora"], engine.encoder)
    assert torch.equal(nora.id_cond, first.id_cond)

    path.write_text(text.replace("{photos: [cast/nora/1.jpg]", two_photos))  # default: mean
    story = load_story(path)
    mean_job = plan_story(story, engine.spec())[0]
    assert mean_job.combine == {"nora": "mean", "sam": "mean"} and mean_job.key != job.key
    (nora_mean, sam_again), stats = engine.identities(mean_job, project)
    assert stats == {"identity_cache_hits": 3, "identity_cache_misses": 0}  # entries are per photo
    assert not torch.allclose(nora_mean.id_cond, nora.id_cond)
    assert torch.equal(sam_again.id_cond, sam.id_cond)


def test_library_members_are_encoded_once_for_every_project(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    library = make_library(tmp_path_factory, tmp_path / "library")
    cache = library / ".storyreel" / "cache" / "identities"
    engine = IngredientsEngine(tiny_model_dir, memory="none")
    for index, expected in enumerate(({"hits": 0, "misses": 2}, {"hits": 1, "misses": 1})):
        path = make_project(tmp_path_factory, tmp_path / f"p{index}", shots=1, from_library=("nora",))
        story = load_story(path, cast_library=library)
        project = Project.from_story(story)
        (job,) = plan_story(story, engine.spec())
        assert job.cast == ["nora", "sam"]
        _, stats = engine.identities(job, project)
        assert stats == {f"identity_cache_{k}": v for k, v in expected.items()}  # nora: once for both
        assert len(list(cache.glob("*/*.json"))) == 1  # nora's, in the library
        assert len(list(project.identity_cache_dir.glob("*/*.json"))) == 1  # sam's, in the project
        files = engine.cache_files(job, project)
        assert sum(path.is_relative_to(cache) for path in files) == 3  # nora's tensors, face, metadata
