"""Story → one fully resolved :class:`RenderJob` per shot, and the job key that decides what to re-render.

A job holds everything its engine needs, so an engine never looks at the story: the final prompt
({name} → description), the cast left to right with their photos (paths, hashes, chosen faces) and
descriptions (and, for the model, how each person's photos are combined into one identity), seed, frame
count (and the frames the model generates, of which the clip keeps the first), fps, size, sampler settings
(steps, guidance, router, guidance routing, step cache), engine and model revision. Fields an engine
ignores are left ``None`` so that changing them does not invalidate its clips (the preview ignores steps
and guidance; the model ignores captions). The **key** is the sha256 of the job's canonical JSON without
the fields that do not change pixels (:data:`NOT_IN_KEY`): same key, same clip.

Settings a story gives per shot or in ``defaults`` (``cfg_routing``, ``cache``) can also be given for every
shot on the command line (:class:`Overrides`): the command line wins, then the shot, then ``defaults``.

An engine describes itself to the planner with an :class:`EngineSpec` (no weights loaded). Planning reads
the cast once per story (:func:`storyreel.cast.cast_photos`: each photo hashed through the one cached
helper, :func:`storyreel.fsutil.file_sha256`, and its face chosen); planning a shot touches no disk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ingredients_model import released
from storyreel.cast import CastPhotos, FaceChoice, cast_photos
from storyreel.cast_library import member_cache_dir
from storyreel.clip_store import clip_problem, find_stored
from storyreel.errors import StoryreelError
from storyreel.fsutil import read_json_object
from storyreel.step_cache import CacheSetting, cache_kind, cache_spec, first_block_spec
from storyreel.timeline import BURNED_CAPTIONS

if TYPE_CHECKING:
    from storyreel.project import Project
    from storyreel.story import Shot, Story

Status = Literal["done", "stored", "stale", "damaged", "todo"]
"""``done``: the view has the current clip and it checks out against its record; ``stored``: the clip
store has it (another story or variant rendered it), so it is linked, not rendered; ``stale``: the view
has a clip of other inputs; ``damaged``: the view's clip has the current key but does not check out
(see :func:`storyreel.clip_store.clip_problem`), so it is rendered again; ``todo``."""
KEY_VERSION = 1  # bump if the meaning of a job field changes


@dataclass(frozen=True)
class EngineSpec:
    """What the planner needs to know about an engine without loading any weights.

    ``fps``/``width``/``height`` None mean "the story's reel fps / size"; ``orientable``: the engine also
    renders ``height`` x ``width``, and a job takes the orientation of the reel (portrait when the reel is
    taller than wide). Frame counts are clipped to ``max_frames`` and, when ``frame_multiple`` > 1, rounded
    to ``k * frame_multiple + 1`` (the VAE's temporal compression). ``uses_caption``: the engine draws the
    shot caption (unless the reel burns it in); ``generative``: a diffusion model, so negative prompts,
    steps, guidance and the step cache matter (and the router mode and guidance routing when ``router``);
    ``guidance``: its guidance scale when the story sets none. ``native_frames``: the frame count the model
    was trained for, which it generates for every shot (the clip keeps the shot's frames) unless the story
    asks for ``model_frames: shot``; None: the engine generates the shot's frames. ``caches``: the step
    cache kinds the engine can use.
    """

    name: str
    version: str
    fps: int | None = None
    width: int | None = None
    height: int | None = None
    max_frames: int | None = None
    frame_multiple: int = 1
    model_revision: str | None = None
    uses_caption: bool = False
    generative: bool = False
    min_cast: int = 0
    orientable: bool = False
    guidance: float | None = None
    router: bool = True
    native_frames: int | None = None
    caches: tuple[str, ...] = ()


@dataclass(frozen=True)
class Overrides:
    """Settings given on the command line for every shot, over the story's (None: the story's own).
    ``cache`` is a setting as written in story.yaml (``none`` turns a story's cache off)."""

    cfg_routing: str | None = None
    cache: CacheSetting | None = None

    @classmethod
    def given(
        cls,
        cfg_routing: str | None = None,
        cache: CacheSetting | None = None,
        cache_threshold: float | None = None,
    ) -> Overrides:
        """``--cfg-routing``, ``--cache`` and ``--cache-threshold`` (a first-block cache), checked."""
        if cfg_routing is not None and cfg_routing not in released.CFG_ROUTINGS:
            raise StoryreelError(
                f"unknown --cfg-routing {cfg_routing!r}",
                hint="use one of: " + ", ".join(released.CFG_ROUTINGS),
            )
        if cache is not None and cache_threshold is not None:
            raise StoryreelError(
                "give --cache or --cache-threshold, not both",
                hint="--cache-threshold X is short for --cache '{kind: first_block, threshold: X}'",
            )
        if cache_threshold is not None:
            cache = first_block_spec(cache_threshold)
        cache_spec(cache)  # checked now, before any story is planned
        return cls(cfg_routing, cache)


NOT_IN_KEY = frozenset({"key", "photos", "descriptions", "cast_caches"})
"""Job fields that do not change the pixels on their own: where the photos are (their bytes are in
``photo_hashes``), the people's descriptions (the prompt the engine uses already contains them) and where
their identities and reference crops are cached (entries are content-addressed): a cast library member
renders to the same key as the same person in the project."""


class RenderJob(BaseModel):
    """One shot, fully resolved for one engine. JSON round-trips; ``key`` is derived, never set by hand."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shot_id: str
    prompt: str
    negative_prompt: str | None = None
    cast: list[str]
    photos: dict[str, list[Path]] = {}
    descriptions: dict[str, str] = {}
    cast_caches: dict[str, Path] = {}
    """The cache folder (laid out as a project's ``.storyreel/cache/``) of each person cached outside the
    project: cast library members."""
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
    cfg_routing: str | None = None
    model_frames: int | None = None
    cache: dict[str, Any] | None = None
    engine: str
    engine_version: str
    model_revision: str | None = None
    key: str = ""

    def compute_key(self) -> str:
        """sha256 of the canonical JSON of every field but those in :data:`NOT_IN_KEY`.

        Fields added since keys were first written leave the key as it was while they hold what was
        rendered before they existed, so clips made then stay current: no ``combine`` (engines without
        identities), the released ``cfg_routing``, a model that generated exactly the kept frames, and no
        step cache or a first-block threshold alone (written as the former ``cache_threshold`` field).
        """
        payload = self.model_dump(exclude=set(NOT_IN_KEY))
        if payload["combine"] is None:
            del payload["combine"]
        if payload["cfg_routing"] in (None, released.CFG_ROUTING):
            del payload["cfg_routing"]
        if payload["model_frames"] in (None, payload["frames"]):
            del payload["model_frames"]
        cache = payload.pop("cache")
        if cache is None or (cache.keys() == {"kind", "threshold"} and cache["kind"] == "first_block"):
            payload["cache_threshold"] = None if cache is None else float(cache["threshold"])
        else:
            payload["cache"] = cache
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

    def cache_dir(self, name: str, project_cache_dir: Path) -> Path:
        """The cache folder for ``name``'s identities and reference crops: their own (``cast_caches``),
        else the project's (``project_cache_dir``)."""
        return Path(self.cast_caches.get(name, project_cache_dir))

    @property
    def generated_frames(self) -> int:
        """Frames the engine generates, of which the clip keeps the first :attr:`frames`."""
        return self.model_frames or self.frames

    def face_choices(self, name: str) -> list[FaceChoice]:
        """The face chosen in each of ``name``'s photos (in the order of ``photos[name]``)."""
        return [FaceChoice.parse(token) for token in self.faces[name]]


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


def _setting(override: Any, shot: Any, default: Any) -> Any:
    """The command line's value, else the shot's, else the story default's."""
    return next((value for value in (override, shot) if value is not None), default)


def shot_cache(story: Story, shot: Shot, overrides: Overrides | None = None) -> dict[str, Any] | None:
    """The step cache a model uses for ``shot`` (the pipeline's ``cache=`` spec; None: no cache)."""
    given = overrides or Overrides()
    return cache_spec(_setting(given.cache, shot.cache, story.defaults.cache))


def _engine_cache(story: Story, shot: Shot, spec: EngineSpec, given: Overrides) -> dict[str, Any] | None:
    """The step cache of ``shot`` on the engine of ``spec`` (None for engines without steps)."""
    if not spec.generative:
        return None
    cache = shot_cache(story, shot, given)
    kind = cache_kind(cache)
    if kind is not None and kind not in spec.caches:
        usable = ", ".join(spec.caches) or "none"
        raise StoryreelError(
            f"shot {shot.id}: the {spec.name} engine cannot use the {kind} step cache",
            hint=f"step caches of {spec.name}: {usable}; set another `cache:` on the shot (or `cache: none`)",
        )
    return cache


def plan_shot(
    story: Story,
    shot: Shot,
    spec: EngineSpec,
    photos: Mapping[str, CastPhotos],
    *,
    cast_caches: Mapping[str, Path] | None = None,
    overrides: Overrides | None = None,
) -> RenderJob:
    """The job for one shot of ``story`` on the engine described by ``spec`` (``photos``: from
    :func:`~storyreel.cast.cast_photos` for everyone in the shot; ``cast_caches``: the cache folder of
    people not cached in the project; nothing is read from disk here)."""
    defaults = story.defaults
    given = overrides or Overrides()
    cast = list(shot.cast or [])
    fps = spec.fps or story.output.fps
    model = spec.generative
    negative = shot.negative_prompt if shot.negative_prompt is not None else defaults.negative_prompt
    guidance = next((g for g in (shot.guidance, defaults.guidance, spec.guidance) if g is not None), None)
    width, height = spec.width or story.output.width, spec.height or story.output.height
    if spec.orientable and (height > width) != (story.output.height > story.output.width):
        width, height = height, width
    # explicit `frames` are Ingredients frames (8 fps); other engines use the seconds they stand for
    explicit = shot.frames if model and fps == released.FPS else None
    frames = frame_count(shot.seconds or defaults.seconds, explicit, spec, fps)
    model_frames = None
    if spec.native_frames is not None:
        native = (shot.model_frames or defaults.model_frames) == "native"
        model_frames = spec.native_frames if native else frames
    routed = model and spec.router
    job = RenderJob(
        shot_id=shot.id,
        prompt=shot.resolved_prompt(story),
        negative_prompt=negative if model else None,
        cast=cast,
        photos={name: list(photos[name].paths) for name in cast},
        descriptions={name: story.cast[name].description for name in cast},
        cast_caches={name: path for name, path in (cast_caches or {}).items() if name in cast},
        photo_hashes={name: list(photos[name].hashes) for name in cast},
        faces={name: [choice.token for choice in photos[name].faces] for name in cast},
        # only the model builds identities from all photos; the preview shows the first photo's face
        combine={name: story.cast[name].combine for name in cast} if model else None,
        caption=shot.caption if spec.uses_caption and story.output.captions not in BURNED_CAPTIONS else None,
        seed=shot.seed if shot.seed is not None else derive_seed(defaults.seed, shot.id),
        frames=frames,
        fps=fps,
        width=width,
        height=height,
        steps=(shot.steps or defaults.steps) if model else None,
        guidance=guidance if model else None,
        router_mode=defaults.router if routed else None,
        cfg_routing=_setting(given.cfg_routing, shot.cfg_routing, defaults.cfg_routing) if routed else None,
        model_frames=model_frames,
        cache=_engine_cache(story, shot, spec, given),
        engine=spec.name,
        engine_version=spec.version,
        model_revision=spec.model_revision,
    )
    return job.with_key()


def plan_story(
    story: Story,
    spec: EngineSpec | Callable[[Shot], EngineSpec],
    *,
    only: Iterable[str] | None = None,
    overrides: Overrides | None = None,
) -> list[RenderJob]:
    """Jobs for the story's shots in reel order (only the ids in ``only`` when given); ``spec`` is the
    engine of every shot, or a function giving each shot's engine (stories that mix engines)."""
    spec_of = spec if callable(spec) else lambda shot: spec
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
    specs = {shot.id: spec_of(shot) for shot in shots}
    empty = [shot.id for shot in shots if len(shot.cast or []) < specs[shot.id].min_cast]
    if empty:
        names = ", ".join(sorted({specs[shot_id].name for shot_id in empty}))
        raise StoryreelError(
            f"the {names} engine needs at least one person per shot; no cast in: {', '.join(empty)}",
            hint="name someone with {name} in the prompt or list them under `cast:`, "
            "or give these shots an engine that needs none (`engine: wan-vace` or `engine: preview` on the "
            "shot), or render everything with --engine preview",
        )
    names = dict.fromkeys(name for shot in shots for name in shot.cast or [])
    photos = {name: cast_photos(story.cast[name]) for name in names}
    caches = {name: path for name in names if (path := member_cache_dir(story.cast[name])) is not None}
    return [
        plan_shot(story, shot, specs[shot.id], photos, cast_caches=caches, overrides=overrides)
        for shot in shots
    ]


def read_clip_meta(project: Project, shot_id: str) -> dict | None:
    """The JSON of the shot's clip in the project's view, or None if missing or unreadable."""
    return read_json_object(project.clip_meta_path(shot_id))


def job_status(job: RenderJob, project: Project) -> Status:
    """Whether ``job`` needs rendering in ``project``'s view: see :data:`Status`."""
    clip = project.clip_path(job.shot_id)
    meta = read_clip_meta(project, job.shot_id)
    if clip.is_file() and meta is not None and meta.get("key") == job.key:
        return "damaged" if clip_problem(clip, meta) else "done"
    if find_stored(project, job) is not None:
        return "stored"
    return "stale" if clip.is_file() else "todo"
