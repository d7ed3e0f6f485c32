"""Story → one fully resolved :class:`RenderJob` per shot, and the job key that decides what to re-render.

A job holds everything its engine needs to produce the pixels: the final prompt ({name} → description),
the cast left to right with their photos' hashes and chosen faces (and, for the model, how each person's
photos are combined into one identity), seed, frame count, fps, size, sampler settings, engine and model
revision. Fields an engine ignores are left ``None`` so that changing them
does not invalidate its clips (the preview ignores steps and guidance; the model ignores captions).
The **key** is the sha256 of the job's canonical JSON: same key, same clip.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from storyreel.engines.base import EngineSpec
    from storyreel.project import Project
    from storyreel.story import CastMember, Shot, Story

Status = Literal["done", "stale", "todo"]
KEY_VERSION = 1  # bump if the meaning of a job field changes
BURNED = ("burn", "both")  # output.captions values for which the reel burns captions into the picture


class RenderJob(BaseModel):
    """One shot, fully resolved for one engine. JSON round-trips; ``key`` is derived, never set by hand."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shot_id: str
    prompt: str
    negative_prompt: str | None = None
    cast: list[str]
    photo_hashes: dict[str, list[str]]
    faces: dict[str, list[str]]
    combine: dict[str, str] | None = None
    caption: str | None = None
    seed: int
    frames: int
    fps: int
    width: int
    height: int
    steps: int | None = None
    guidance: float | None = None
    router_mode: str | None = None
    cache_threshold: float | None = None
    engine: str
    engine_version: str
    model_revision: str | None = None
    key: str = ""

    def compute_key(self) -> str:
        """sha256 of the canonical JSON of every field but ``key``."""
        payload = self.model_dump(exclude={"key"})
        if payload["combine"] is None:  # engines without identities: keys as before the field existed
            del payload["combine"]
        payload["key_version"] = KEY_VERSION
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def with_key(self) -> RenderJob:
        """This job with its ``key`` filled in."""
        return self.model_copy(update={"key": self.compute_key()})

    @property
    def seconds(self) -> float:
        """Length of the rendered clip."""
        return self.frames / self.fps


def derive_seed(story_seed: int, shot_id: str) -> int:
    """A shot's seed when it sets none: stable in the story seed and the shot id (32 bits of a sha256)."""
    digest = hashlib.sha256(f"storyreel-seed\0{story_seed}\0{shot_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def frame_count(seconds: float, frames: int | None, spec: EngineSpec, fps: int) -> int:
    """Frames for a shot: explicit ``frames`` or ``round(seconds * fps)``, snapped to the engine's rules.

    With ``frame_multiple`` m > 1 the count becomes the nearest ``m*k + 1`` (at least ``m + 1``), then it is
    clipped to ``max_frames`` (longer shots are time-stretched by the reel).
    """
    count = frames if frames is not None else max(1, round(seconds * fps))
    m = spec.frame_multiple
    if m > 1:
        count = max(1, round((count - 1) / m)) * m + 1
    if spec.max_frames is not None:
        count = min(count, spec.max_frames)
    return count


_hash_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (memoised on path, size and mtime)."""
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo not in _hash_cache:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _hash_cache[memo] = digest.hexdigest()
    return _hash_cache[memo]


def face_choices(member: CastMember) -> list[str]:
    """Which face of each photo is used: ``face=K`` from story.yaml, the box ``cast add`` recorded, or
    ``auto`` (the only / clearly largest face, decided by the photo bytes themselves)."""
    from storyreel.cast import recorded_face

    choices = []
    for photo in member.photos:
        entry = recorded_face(photo)
        if entry is not None and member.face in (None, entry.face):
            box = entry.box
            choices.append(f"box={box.left},{box.top},{box.right},{box.bottom}")
        else:
            choices.append(f"face={member.face}" if member.face is not None else "auto")
    return choices


def plan_shot(
    story: Story, shot: Shot, spec: EngineSpec, *, cache_threshold: float | None = None
) -> RenderJob:
    """The job for one shot of ``story`` on the engine described by ``spec``."""
    defaults = story.defaults
    cast = list(shot.cast or [])
    fps = spec.fps or story.output.fps
    model = spec.generative
    negative = shot.negative_prompt if shot.negative_prompt is not None else defaults.negative_prompt
    job = RenderJob(
        shot_id=shot.id,
        prompt=shot.resolved_prompt(story),
        negative_prompt=negative if model else None,
        cast=cast,
        photo_hashes={name: [file_sha256(p) for p in story.cast[name].photos] for name in cast},
        faces={name: face_choices(story.cast[name]) for name in cast},
        # only the model builds identities from all photos; the preview shows the first photo's face
        combine={name: story.cast[name].combine for name in cast} if model else None,
        caption=shot.caption if spec.uses_caption and story.output.captions not in BURNED else None,
        seed=shot.seed if shot.seed is not None else derive_seed(defaults.seed, shot.id),
        # explicit `frames` are model frames (8 fps); other engines use the seconds they stand for
        frames=frame_count(shot.seconds or defaults.seconds, shot.frames if model else None, spec, fps),
        fps=fps,
        width=spec.width or story.output.width,
        height=spec.height or story.output.height,
        steps=(shot.steps or defaults.steps) if model else None,
        guidance=(shot.guidance if shot.guidance is not None else defaults.guidance) if model else None,
        router_mode=defaults.router if model else None,
        cache_threshold=cache_threshold if model else None,
        engine=spec.name,
        engine_version=spec.version,
        model_revision=spec.model_revision,
    )
    return job.with_key()


def plan_story(
    story: Story, spec: EngineSpec, *, only: Iterable[str] | None = None, cache_threshold: float | None = None
) -> list[RenderJob]:
    """Jobs for the story's shots in reel order (only the ids in ``only`` when given)."""
    from storyreel.errors import StoryreelError

    shots = story.shots
    if only:
        wanted = list(dict.fromkeys(only))
        known = {shot.id for shot in shots}
        unknown = [shot_id for shot_id in wanted if shot_id not in known]
        if unknown:
            raise StoryreelError(
                f"no shot with id {', '.join(map(repr, unknown))} in {story.path}",
                hint="shot ids in this story: " + ", ".join(shot.id for shot in shots),
            )
        shots = [shot for shot in shots if shot.id in wanted]
    empty = [shot.id for shot in shots if len(shot.cast or []) < spec.min_cast]
    if empty:
        raise StoryreelError(
            f"the {spec.name} engine needs at least {spec.min_cast} person per shot; "
            f"no cast in: {', '.join(empty)}",
            hint="name someone with {name} in the prompt or list them under `cast:`, "
            "or render these shots with --engine preview",
        )
    return [plan_shot(story, shot, spec, cache_threshold=cache_threshold) for shot in shots]


def read_clip_meta(project: Project, shot_id: str) -> dict | None:
    """The JSON written next to a finished clip, or None if missing or unreadable."""
    try:
        data = json.loads(project.clip_meta_path(shot_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def job_status(job: RenderJob, project: Project) -> Status:
    """``done`` (clip and JSON exist, key matches), ``stale`` (a clip of other inputs exists) or ``todo``."""
    if not project.clip_path(job.shot_id).is_file():
        return "todo"
    meta = read_clip_meta(project, job.shot_id)
    return "done" if meta is not None and meta.get("key") == job.key else "stale"
