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


@pytest.fixture(scope="module")
def model_of_17_frames(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model folder with a transformer trained (randomly) for 17 frames instead of 9."""
    import shutil

    from ingredients_model.transformer import IngredientsTransformer3DModel

    folder = tmp_path_factory.mktemp("tiny-17") / "model"
    shutil.copytree(tiny_model_dir, folder)
    config = IngredientsTransformer3DModel.load_config(folder / "transformer")
    torch.manual_seed(0)
    transformer = IngredientsTransformer3DModel.from_config({**config, "sample_frames": 17})
    shutil.rmtree(folder / "transformer")
    transformer.save_pretrained(folder / "transformer")
    return folder


class PipelineSpy:
    """The engine's pipeline, recording the arguments of each call."""

    def __init__(self, pipe) -> None:
        self.pipe, self.calls = pipe, []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self.pipe(**kwargs)

    def __getattr__(self, name: str):
        return getattr(self.pipe, name)


@pytest.mark.slow
def test_the_model_generates_its_trained_frames_and_the_clip_keeps_the_shots(
    model_of_17_frames: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, caplog
) -> None:
    path = make_project(tmp_path_factory, tmp_path / "p", shots=1, engine="ingredients", steps=2, seconds=1)
    story = load_story(path)
    project = Project.from_story(story)
    engine = IngredientsEngine(model_of_17_frames, memory="none")
    assert engine.spec().native_frames == 17
    job = plan_story(story, engine.spec())[0]
    assert (job.frames, job.model_frames, job.cfg_routing, job.cache) == (9, 17, "released", None)
    engine.load()
    engine.pipe = spy = PipelineSpy(engine.pipe)
    renders = {
        "trimmed": job,
        "full": job.model_copy(update={"frames": 17}),
        "shot": job.model_copy(update={"model_frames": 9}),
        "routed": job.model_copy(update={"cfg_routing": "per_branch", "cache": {"kind": "taylorseer"}}),
    }
    results, frames = {}, {}
    for name, each in renders.items():
        with caplog.at_level("WARNING", logger="ingredients_model.pipeline"):
            caplog.clear()
            results[name] = engine.render(each, tmp_path / f"{name}.mp4", lambda d, t: None, project=project)
            results[name].details["warnings"] = caplog.text
        frames[name] = _frames(tmp_path / f"{name}.mp4", 96, 64).astype(float)
    calls = dict(zip(renders, spy.calls, strict=True))
    assert [calls[name]["num_frames"] for name in renders] == [None, None, 9, None]  # None: the trained 17
    assert [results[name].details["generated_frames"] for name in renders] == [17, 17, 9, 17]
    assert [len(frames[name]) for name in renders] == [9, 17, 9, 9]
    assert "differs from the 17 frames" in results["shot"].details["warnings"]
    assert "differs" not in results["trimmed"].details["warnings"]
    # the kept frames are the first frames of the whole clip, up to the codec's rounding (noise-like frames
    # of random weights: about 2 levels), far closer than a clip generated at 9 frames (about 27)
    same = np.abs(frames["trimmed"] - frames["full"][:9]).mean()
    other = np.abs(frames["trimmed"] - frames["shot"]).mean()
    assert same < 0.25 * other, (same, other)
    assert calls["trimmed"]["cfg_routing"] == "released" and calls["trimmed"]["cache"] is None
    assert calls["routed"]["cfg_routing"] == "per_branch" and calls["routed"]["cache"] == {
        "kind": "taylorseer"
    }


def test_cached_prompt_embeddings_the_model_refuses_are_rebuilt(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    import hashlib
    import json

    from safetensors.torch import load_file, save_file

    from storyreel.engines.text_cache import TextCacheWarning

    path = make_project(tmp_path_factory, tmp_path / "p", shots=1, engine="ingredients")
    story = load_story(path)
    project = Project.from_story(story)
    engine = IngredientsEngine(tiny_model_dir, memory="none")
    job = plan_story(story, engine.spec())[0]
    engine.load()
    good = engine.text_embeddings(job, project)
    tensors_path = next(project.text_cache_dir.glob("*.safetensors"))
    meta_path = tensors_path.with_suffix(".json")
    tensors = {name: t[:, :, :-1].contiguous() for name, t in load_file(tensors_path).items()}  # other width
    save_file(tensors, tensors_path)
    meta = json.loads(meta_path.read_text())
    meta.update(sha256=hashlib.sha256(tensors_path.read_bytes()).hexdigest())
    meta["shapes"] = {name: list(t.shape) for name, t in tensors.items()}
    meta_path.write_text(json.dumps(meta))
    fresh = IngredientsEngine(tiny_model_dir, memory="none")
    fresh.load()
    with pytest.warns(TextCacheWarning, match="unusable by the model"):
        rebuilt = fresh.text_embeddings(job, project)
    assert torch.equal(rebuilt[0], good[0]) and torch.equal(rebuilt[1], good[1])
