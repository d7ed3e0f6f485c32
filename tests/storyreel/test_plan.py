"""Planning: fully resolved jobs, stable seeds, frame rules, and keys that change exactly with the pixels."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from storyreel.clip_store import clip_checksum, clip_problem
from storyreel.errors import StoryreelError
from storyreel.plan import (
    NOT_IN_KEY,
    EngineSpec,
    Overrides,
    RenderJob,
    derive_seed,
    frame_count,
    job_status,
    plan_story,
)
from storyreel.project import Project
from storyreel.story import load_story
from tests.helpers.media import make_clip
from tests.helpers.projects import CAST, example_cast, make_library, make_project

PREVIEW = EngineSpec(name="preview", version="1", uses_caption=True)
MODEL = EngineSpec(
    name="ingredients", version="1", fps=8, width=720, height=480, max_frames=49, frame_multiple=8,
    native_frames=49, model_revision="rev-a", generative=True, guidance=6.0,
    caches=("first_block", "mag", "taylorseer"),
)  # fmt: skip
WAN = EngineSpec(
    name="wan-vace", version="1", fps=16, width=832, height=480, max_frames=81, frame_multiple=4,
    model_revision="rev-w", generative=True, orientable=True, guidance=5.0, router=False,
    caches=("first_block",),
)  # fmt: skip


@pytest.fixture
def story_path(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return make_project(tmp_path_factory, tmp_path / "p", shots=3)


def _keys(path: Path, spec: EngineSpec = PREVIEW) -> dict[str, str]:
    return {job.shot_id: job.key for job in plan_story(load_story(path), spec)}


def test_seed_is_stable_and_depends_on_story_seed_and_shot_id() -> None:
    assert derive_seed(2025, "opening") == derive_seed(2025, "opening")
    assert derive_seed(2025, "opening") == 1143802014  # pinned: a change re-renders every project
    assert derive_seed(2025, "opening") != derive_seed(2026, "opening")
    assert derive_seed(2025, "opening") != derive_seed(2025, "closing")
    assert 0 <= derive_seed(1, "x") < 2**32


@pytest.mark.parametrize(
    ("seconds", "frames", "expected"),
    [(6.0, None, 49), (3.0, None, 25), (1.0, None, 9), (0.1, None, 9), (20.0, None, 49), (2.0, 17, 17),
     (2.0, 14, 17), (2.0, 12, 9), (2.0, 400, 49)],
)  # fmt: skip
def test_model_frames_are_8k_plus_1_clipped_to_49(seconds: float, frames: int | None, expected: int) -> None:
    assert frame_count(seconds, frames, MODEL, 8) == expected


def test_preview_frames_follow_the_reel_fps() -> None:
    assert frame_count(6.0, None, PREVIEW, 24) == 144
    assert frame_count(0.01, None, PREVIEW, 24) == 1


def test_jobs_are_fully_resolved(story_path: Path) -> None:
    story = load_story(story_path)
    jobs = plan_story(story, MODEL)
    first = jobs[0]
    assert first.prompt.startswith("a young woman with long straight light-brown hair and a young man")
    assert "{" not in first.prompt
    assert first.cast == ["nora", "sam"]
    assert first.seed == derive_seed(5, "s1")
    assert (first.frames, first.fps, first.width, first.height) == (9, 8, 720, 480)
    assert (first.steps, first.guidance, first.router_mode) == (2, 6.0, "soft")
    assert first.model_revision == "rev-a" and first.caption is None
    assert len(first.photo_hashes["nora"][0]) == 64
    assert first.faces == {"nora": ["auto"], "sam": ["auto"]}
    assert first.combine == {"nora": "mean", "sam": "mean"}
    preview = plan_story(story, PREVIEW)[0]
    assert (preview.fps, preview.width, preview.height, preview.frames) == (12, 160, 96, 12)
    assert preview.steps is None and preview.guidance is None and preview.model_revision is None
    assert preview.caption == "Caption 1"  # the reel burns no captions (captions: none)


def test_job_json_round_trip_keeps_the_key(story_path: Path) -> None:
    job = plan_story(load_story(story_path), MODEL)[1]
    again = RenderJob.model_validate_json(job.model_dump_json())
    assert again == job and again.compute_key() == job.key


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize(
    ("spec", "old", "new", "changed"),
    [
        (MODEL, "seed: 5", "seed: 6", {"s1", "s2", "s3"}),
        (MODEL, "steps: 2", "steps: 3", {"s1", "s2", "s3"}),
        (MODEL, "orange flight suit", "blue flight suit", {"s2"}),  # eileen: shot 2 only
        (MODEL, "caption: Caption 2", "caption: Other", set()),  # the model never sees captions
        (MODEL, "cast/sam/1.jpg]", "cast/sam/1.jpg], combine: first", {"s1", "s3"}),
        (MODEL, "cast/eileen/1.jpg]", "cast/eileen/1.jpg], combine: best", {"s2"}),
        (PREVIEW, "steps: 2", "steps: 3", set()),  # the preview ignores steps
        (PREVIEW, "cast/sam/1.jpg]", "cast/sam/1.jpg], combine: first", set()),  # it shows one photo
        (PREVIEW, "caption: Caption 2", "caption: Other", {"s2"}),
        (MODEL, "seed: 5", "seed: 5, cfg_routing: per_branch", {"s1", "s2", "s3"}),
        (MODEL, "seed: 5", "seed: 5, cfg_routing: released", set()),  # the default, written out
        (MODEL, "caption: Caption 2", "caption: Caption 2\n    cfg_routing: per_branch", {"s2"}),
        (PREVIEW, "seed: 5", "seed: 5, cfg_routing: per_branch", set()),
        (MODEL, "seed: 5", "seed: 5, cache: taylorseer", {"s1", "s2", "s3"}),
        (
            MODEL,
            "caption: Caption 3",
            "caption: Caption 3\n    cache: {kind: taylorseer, cache_interval: 3}",
            {"s3"},
        ),
        (PREVIEW, "seed: 5", "seed: 5, cache: taylorseer", set()),
        (MODEL, "seed: 5", "seed: 5, model_frames: shot", {"s1", "s2", "s3"}),  # 9 frames, not 9 of 49
        (MODEL, "caption: Caption 1", "caption: Caption 1\n    model_frames: shot", {"s1"}),
        (PREVIEW, "seed: 5", "seed: 5, model_frames: shot", set()),
        (PREVIEW, "size: 160x96", "size: 320x192", {"s1", "s2", "s3"}),
        (PREVIEW, "title: Test Reel", "title: Other", set()),
        (PREVIEW, "captions: none", "captions: burn", {"s1", "s2", "s3"}),  # caption leaves the clip
    ],
)
def test_key_changes_exactly_when_pixels_change(
    story_path: Path, spec: EngineSpec, old: str, new: str, changed: set[str]
) -> None:
    before = _keys(story_path, spec)
    _edit(story_path, old, new)
    after = _keys(story_path, spec)
    assert {shot for shot in before if before[shot] != after[shot]} == changed


def test_key_follows_photo_bytes_model_revision_and_engine_version(story_path: Path) -> None:
    before = _keys(story_path, MODEL)
    photo = story_path.parent / "cast" / "sam" / "1.jpg"
    photo.write_bytes(photo.read_bytes() + b"\0")
    after = _keys(story_path, MODEL)
    assert {s for s in before if before[s] != after[s]} == {"s1", "s3"}
    other = EngineSpec(**{**MODEL.__dict__, "model_revision": "rev-b"})
    assert set(_keys(story_path, other).values()).isdisjoint(after.values())
    newer = EngineSpec(**{**PREVIEW.__dict__, "version": "2"})
    assert set(_keys(story_path, newer).values()).isdisjoint(_keys(story_path, PREVIEW).values())


def test_preview_keys_do_not_include_the_model_only_fields(story_path: Path) -> None:
    job = plan_story(load_story(story_path), PREVIEW)[0]
    assert job.combine is job.cfg_routing is job.model_frames is job.cache is None
    payload = job.model_dump(exclude={*NOT_IN_KEY, "combine", "cfg_routing", "model_frames", "cache"})
    payload.update(cache_threshold=None, key_version=1)  # the fields of keys before these existed
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert job.key == hashlib.sha256(canonical.encode()).hexdigest()


def test_keys_of_known_jobs_are_pinned() -> None:
    """Changing how keys are computed would make every user's clips stale: these keys are fixed."""
    common = dict(
        shot_id="s1", prompt="a woman with short hair waves", cast=["ana"],
        photo_hashes={"ana": ["ab" * 32]}, faces={"ana": ["box=10,20,110,140"]}, seed=1143802014,
        frames=49, fps=8, width=720, height=480, engine="ingredients", engine_version="1",
    )  # fmt: skip
    model = RenderJob(
        **common, negative_prompt="blurry", combine={"ana": "mean"}, steps=50, guidance=6.0,
        router_mode="soft", model_revision="rev-a",
    ).with_key()  # fmt: skip
    assert model.key == "d0f2f89f940e308d77817c4ec17751380b15fae150f0f91ad43de69ebfffef7c"
    # what was rendered before these fields existed keeps its key: released cfg routing, the model
    # generating exactly the kept frames, no cache, and the first-block threshold (--cache-threshold)
    written_out = model.model_copy(update={"cfg_routing": "released", "model_frames": 49}).with_key()
    assert written_out.key == model.key
    threshold = written_out.model_copy(update={"cache": {"kind": "first_block", "threshold": 0.05}})
    assert threshold.with_key().key == "9f4af9fc47b25ae1c90b16884ef4077ed598c053790f54e1f708df6b9c71ea81"
    preview = RenderJob(
        **{**common, "faces": {"ana": ["auto"]}, "engine": "preview", "engine_version": "2", "fps": 24,
           "frames": 144},
        caption="Hello",
    ).with_key()  # fmt: skip
    assert preview.key == "0fe1d29fb816478ae067a8f0a0a123fdc44e18ff34bde52381183f880586898e"
    where = {"photos": {"ana": [Path("/elsewhere/ana.jpg")]}, "descriptions": {"ana": "a woman"}}
    assert model.model_copy(update=where).compute_key() == model.key  # paths and descriptions: not pixels


def test_jobs_carry_what_the_engine_needs(story_path: Path) -> None:
    story = load_story(story_path)
    job = plan_story(story, MODEL)[0]
    assert job.photos == {name: story.cast[name].photos for name in ("nora", "sam")}
    assert job.descriptions["sam"] == story.cast["sam"].description
    assert [choice.token for choice in job.face_choices("nora")] == ["auto"]


def test_only_selects_shots_and_rejects_unknown_ids(story_path: Path) -> None:
    story = load_story(story_path)
    assert [j.shot_id for j in plan_story(story, PREVIEW, only=["s3", "s1"])] == ["s1", "s3"]
    with pytest.raises(StoryreelError) as err:
        plan_story(story, PREVIEW, only=["s1", "nope"])
    assert "'nope'" in err.value.message and "s1, s2, s3" in (err.value.hint or "")


def test_status_done_stale_damaged_todo(story_path: Path) -> None:
    story = load_story(story_path)
    project = Project.from_story(story)
    job = plan_story(story, PREVIEW)[0]
    assert job_status(job, project) == "todo"
    project.renders_dir.mkdir(exist_ok=True)
    clip = make_clip(project.clip_path("s1"), 4)
    assert job_status(job, project) == "stale"  # a clip without its record is not trusted
    meta = project.clip_meta_path("s1")
    meta.write_text(json.dumps({"key": job.key}))  # a record from before clips were checksummed
    assert job_status(job, project) == "done"
    meta.write_text(json.dumps({"key": job.key, "clip": clip_checksum(clip)}))
    assert job_status(job, project) == "done"
    meta.write_text(json.dumps({"key": "0" * 64, "clip": clip_checksum(clip)}))
    assert job_status(job, project) == "stale"
    meta.write_text("{broken")
    assert job_status(job, project) == "stale"
    meta.write_text("[1]")
    assert job_status(job, project) == "stale"


def test_a_damaged_clip_is_not_current(story_path: Path) -> None:
    story = load_story(story_path)
    project = Project.from_story(story)
    job = plan_story(story, PREVIEW)[0]
    project.renders_dir.mkdir(exist_ok=True)
    clip = make_clip(project.clip_path("s1"), 4)
    good = clip.read_bytes()
    meta = project.clip_meta_path("s1")
    meta.write_text(json.dumps({"key": job.key, "clip": clip_checksum(clip)}))
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    for damage, why in (
        (b"", "it is empty"),  # `: > renders/s1.mp4`
        (good[: len(good) // 2], "it has"),  # truncated
        (bytes(flipped), "content differs"),  # same size, one byte changed
        (b"GIF89a" + good[6:], "not an MP4 or WebM"),
    ):
        clip.write_bytes(damage)
        assert job_status(job, project) == "damaged"
        assert why in (clip_problem(clip, json.loads(meta.read_text())) or "")
    clip.write_bytes(good)
    assert job_status(job, project) == "done" and clip_problem(clip, json.loads(meta.read_text())) is None
    meta.write_text(json.dumps({"key": job.key}))  # an old record: the header check still runs
    clip.write_bytes(b"")
    assert job_status(job, project) == "damaged"


def test_the_model_needs_people_in_every_shot(story_path: Path) -> None:
    _edit(story_path, "{eileen} waves at the camera", "a rocket waits")
    story = load_story(story_path)
    assert plan_story(story, PREVIEW)[1].cast == []  # the preview draws the scene without cards
    with pytest.raises(StoryreelError) as err:
        plan_story(story, EngineSpec(**{**MODEL.__dict__, "min_cast": 1}))
    assert "no cast in: s2" in err.value.message and "--engine preview" in (err.value.hint or "")


def test_explicit_model_frames(story_path: Path) -> None:
    _edit(story_path, "caption: Caption 1", "caption: Caption 1\n    frames: 17")
    story = load_story(story_path)
    assert plan_story(story, MODEL)[0].frames == 17
    assert plan_story(story, PREVIEW)[0].frames == 26  # 17 frames at 8 fps = 2.125 s at 12 fps


def test_each_shot_may_have_its_own_engine(story_path: Path) -> None:
    story = load_story(story_path)
    jobs = plan_story(story, lambda shot: WAN if shot.id == "s2" else MODEL)
    assert [job.engine for job in jobs] == ["ingredients", "wan-vace", "ingredients"]
    wan = jobs[1]
    assert (wan.fps, wan.width, wan.height, wan.frames) == (16, 832, 480, 17)  # 1 s at 16 fps → 4k+1
    assert (wan.guidance, wan.router_mode, wan.model_revision) == (5.0, None, "rev-w")
    assert jobs[0].guidance == 6.0 and jobs[0].router_mode == "soft"
    assert jobs[0].key == plan_story(story, MODEL)[0].key  # mixing leaves the other shots' keys alone


def test_an_orientable_engine_takes_the_reels_orientation(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    portrait = load_story(make_project(tmp_path_factory, tmp_path / "v", shots=1, size="96x160"))
    square = load_story(make_project(tmp_path_factory, tmp_path / "q", shots=1, size="160x160"))
    assert (plan_story(portrait, WAN)[0].width, plan_story(portrait, WAN)[0].height) == (480, 832)
    assert (plan_story(square, WAN)[0].width, plan_story(square, WAN)[0].height) == (832, 480)
    assert (plan_story(portrait, MODEL)[0].width, plan_story(portrait, MODEL)[0].height) == (720, 480)


def test_guidance_comes_from_the_shot_then_the_story_then_the_engine(story_path: Path) -> None:
    _edit(story_path, "caption: Caption 1", "caption: Caption 1\n    guidance: 3.5")
    story = load_story(story_path)
    assert [job.guidance for job in plan_story(story, WAN)] == [3.5, 5.0, 5.0]
    _edit(story_path, "seed: 5", "seed: 5, guidance: 7.0")
    assert [job.guidance for job in plan_story(load_story(story_path), WAN)] == [3.5, 7.0, 7.0]


def test_explicit_frames_count_at_the_ingredients_rate(story_path: Path) -> None:
    _edit(story_path, "caption: Caption 1", "caption: Caption 1\n    frames: 17")
    story = load_story(story_path)
    assert plan_story(story, MODEL)[0].frames == 17
    assert plan_story(story, WAN)[0].frames == 33  # 17 frames at 8 fps = 2.125 s → 34 at 16 fps → 4k+1


@pytest.mark.parametrize("spec", [MODEL, PREVIEW], ids=["model", "preview"])
def test_a_member_renders_to_the_same_key_from_the_project_or_the_library(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, spec: EngineSpec
) -> None:
    from storyreel.cast import add_cast_member
    from storyreel.project import Project as Folder

    library = make_library(tmp_path_factory, tmp_path / "library")
    local = make_project(tmp_path_factory, tmp_path / "local", shots=3)
    shared = make_project(tmp_path_factory, tmp_path / "shared", shots=3, from_library=("nora", "sam"))
    shared.write_text(shared.read_text().replace("cast:\n", "cast:\n  sam: {library: sam}\n"))
    for story, names in ((local, CAST), (shared, ["eileen"])):  # recorded by `cast add`, as in the library
        shutil.rmtree(story.parent / "cast")
        for name in names:
            photo = example_cast(tmp_path_factory) / name / "1.jpg"
            add_cast_member(Folder(story.parent, story), name, [photo])
    here, there = load_story(local), load_story(shared, cast_library=library)
    assert there.cast["nora"].from_library is not None and here.cast["nora"].from_library is None
    jobs, moved = plan_story(here, spec), plan_story(there, spec)
    assert [job.key for job in jobs] == [job.key for job in moved]  # photo bytes and faces, not paths
    assert moved[0].photos["nora"] == [library / "nora" / "1.jpg"] != jobs[0].photos["nora"]
    assert moved[0].cast_caches == {
        "nora": library / ".storyreel" / "cache",
        "sam": library / ".storyreel" / "cache",
    }
    assert jobs[0].cast_caches == {} and "eileen" not in moved[1].cast_caches
    assert moved[0].faces == jobs[0].faces and moved[0].faces["nora"][0].startswith("box=")


def test_model_generates_its_trained_frames_and_keeps_the_shots(story_path: Path) -> None:
    jobs = plan_story(load_story(story_path), MODEL)
    assert [(job.frames, job.model_frames, job.generated_frames) for job in jobs] == [(9, 49, 49)] * 3
    _edit(story_path, "caption: Caption 1", "caption: Caption 1\n    model_frames: shot")
    jobs = plan_story(load_story(story_path), MODEL)
    assert [(job.frames, job.generated_frames) for job in jobs] == [(9, 9), (9, 49), (9, 49)]
    preview = plan_story(load_story(story_path), PREVIEW)[0]
    assert preview.model_frames is None and preview.generated_frames == preview.frames


def test_command_line_beats_shot_beats_defaults(story_path: Path) -> None:
    _edit(story_path, "seed: 5", "seed: 5, cfg_routing: per_branch, cache: taylorseer")
    _edit(story_path, "caption: Caption 2", "caption: Caption 2\n    cfg_routing: released\n    cache: none")
    story = load_story(story_path)
    jobs = plan_story(story, MODEL)
    assert [job.cfg_routing for job in jobs] == ["per_branch", "released", "per_branch"]
    assert [job.cache for job in jobs] == [{"kind": "taylorseer"}, None, {"kind": "taylorseer"}]
    given = Overrides(cfg_routing="released", cache={"kind": "first_block", "threshold": 0.1})
    jobs = plan_story(story, MODEL, overrides=given)
    assert {job.cfg_routing for job in jobs} == {"released"}
    assert all(job.cache == {"kind": "first_block", "threshold": 0.1} for job in jobs)
    assert all(job.cache is None for job in plan_story(story, MODEL, overrides=Overrides(cache="none")))
    assert all(job.cache is None for job in plan_story(story, PREVIEW, overrides=given))


def test_a_bad_command_line_cache_is_a_clear_error(story_path: Path) -> None:
    with pytest.raises(StoryreelError) as err:
        plan_story(
            load_story(story_path), MODEL, overrides=Overrides(cache={"kind": "mag", "threshold": 0.1})
        )
    assert "mag_ratios" in err.value.message and "calibrate" in (err.value.hint or "")


def test_engine_only_settings(story_path: Path) -> None:
    _edit(
        story_path, "seed: 5", "seed: 5, cfg_routing: per_branch, cache: {kind: first_block, threshold: 0.1}"
    )
    jobs = plan_story(load_story(story_path), lambda shot: WAN if shot.id == "s2" else MODEL)
    assert [job.cfg_routing for job in jobs] == ["per_branch", None, "per_branch"]  # Wan routes no faces
    assert [job.model_frames for job in jobs] == [49, None, 49]  # Wan generates the shot's frames
    assert jobs[1].cache == {"kind": "first_block", "threshold": 0.1}
    _edit(story_path, "caption: Caption 2", "caption: Caption 2\n    cache: taylorseer")
    with pytest.raises(StoryreelError) as err:
        plan_story(load_story(story_path), lambda shot: WAN if shot.id == "s2" else MODEL)
    assert "shot s2: the wan-vace engine cannot use the taylorseer step cache" in err.value.message
    assert "first_block" in (err.value.hint or "")
