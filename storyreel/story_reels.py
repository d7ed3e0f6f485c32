"""A story's reels: its clips, music and brand turned into :func:`~storyreel.reel.assemble_reel` settings,
one reel per format (:mod:`storyreel.formats`), each clip framed for it (:mod:`storyreel.reframe`).

:mod:`storyreel.reel` assembles clips it is given and knows nothing of stories; this module reads the
story and its project for it. :mod:`storyreel.outputs` builds the reels, the review page and the record
together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyreel.errors import HintedError, StoryreelError
from storyreel.ffmpeg_tools import probe_video
from storyreel.reel import (
    ReelBrand,
    ReelClip,
    ReelMusic,
    ReelResult,
    Segment,
    assemble_reel,
    planned_segments,
    probe_clips,
)
from storyreel.reframe import SAME_SHAPE, Framing, face_track, plan_framing

if TYPE_CHECKING:
    from storyreel.formats import ReelFormat
    from storyreel.project import Project
    from storyreel.story import Story


def build_reel(story: Story, project: Project, **options: Any) -> Path:
    """Assemble the story's (first format's) reel from its clips (never renders); return the reel's path.

    Every missing clip is named in one error that suggests `storyreel render`; ``options`` are passed
    to :func:`assemble_reel` (e.g. ``retime``, ``captions``, ``video_format``), overriding the story;
    ``output`` replaces the format's file.
    """
    return build_reel_result(story, project, **options).path


def reel_settings(
    story: Story, project: Project, fmt: ReelFormat | None = None, **options: Any
) -> tuple[list[ReelClip], Path, dict]:
    """The story's clips, one format's reel path and :func:`assemble_reel` keyword arguments.

    ``fmt`` defaults to the story's first format. ``options`` (e.g. ``retime``, ``captions``,
    ``video_format``) override the story's settings; ``output`` replaces the format's file, and a
    ``video_format`` alone changes its suffix. Nothing is probed or checked here; clips carry no framing.
    """
    from storyreel.plan import read_clip_meta

    fmt = fmt or story.output.reel_formats[0]
    clips = []
    for shot in story.shots:
        meta = read_clip_meta(project, shot.id) or {}
        job = meta.get("job") if isinstance(meta.get("job"), dict) else {}
        clips.append(
            ReelClip(
                shot_id=shot.id,
                path=project.clip_path(shot.id),
                transition=shot.transition.type,
                transition_seconds=shot.transition.seconds,
                caption=shot.caption,
                key=meta.get("key") if isinstance(meta.get("key"), str) else None,
                people=len(job.get("cast") or shot.cast or []),
            )
        )
    music = None
    if story.music is not None:
        file = Path(story.music.file)
        music = ReelMusic(
            file=file if file.is_absolute() else story.root / file,
            volume=story.music.volume,
            fade_in=story.music.fade_in,
            fade_out=story.music.fade_out,
            loudness=story.music.loudness,
        )
    brand = None
    if story.brand is not None:
        brand = ReelBrand(
            logo=story.brand.logo,
            font=story.brand.font,
            colors=story.brand.colors.model_dump(),
            end_card=story.brand.end_card,
        )
    options = dict(options)
    output = options.pop("output", None)
    if output is None:
        output = project.root / fmt.file
        if options.get("video_format"):
            output = output.with_suffix(f".{options['video_format']}")
    settings: dict[str, Any] = dict(
        fps=fmt.fps,
        width=fmt.width,
        height=fmt.height,
        captions=story.output.captions,
        title=story.title if story.output.title_card else None,
        credits=story.credits,
        music=music,
        brand=brand,
        label=fmt.label,
    )
    settings.update(options)
    return clips, Path(output), settings


def frame_clips(
    clips: Sequence[ReelClip], project: Project | None, width: int, height: int
) -> list[ReelClip]:
    """``clips`` with their framing in a ``width`` x ``height`` reel (:mod:`storyreel.reframe`): faces are
    looked for only in clips whose shape differs, and cached by clip key in the project."""
    framed = []
    for clip in clips:
        info = probe_video(clip.path)
        if abs((width / height) / (info.width / info.height) - 1) < SAME_SHAPE:
            framing = Framing("fit")
        else:
            cache = project.framing_cache_dir if project is not None else None
            try:
                track = face_track(Path(clip.path), cache, clip.key, clip.people)
            except HintedError as err:  # e.g. the offline face models are not installed
                framing = Framing("fill", note=f"faces could not be looked for ({err.message}): blurred fill")
            else:
                framing = plan_framing(track, width, height, clip.people)
        framed.append(replace(clip, framing=framing))
    return framed


def build_reel_result(
    story: Story, project: Project, fmt: ReelFormat | None = None, **options: Any
) -> ReelResult:
    """Like :func:`build_reel` for the format ``fmt`` (default: the first), returning the full
    :class:`ReelResult` (``on_progress`` is passed on)."""
    clips, output, settings = reel_settings(story, project, fmt, **options)
    missing = [c.shot_id for c in clips if not c.path.is_file()]
    if missing:
        story_path = os.path.relpath(project.story_path)
        raise StoryreelError(
            f"{len(missing)} of {len(clips)} shots have no clip in {project.renders_dir}: "
            + ", ".join(missing),
            hint=f"render them first: `storyreel render {story_path}`",
        )
    probe_clips(clips)  # a damaged clip is named before faces are looked for in it
    clips = frame_clips(clips, project, settings["width"], settings["height"])
    return assemble_reel(clips, output, **settings)


def build_reel_results(
    story: Story,
    project: Project,
    *,
    on_progress: Callable[[float, float], None] | None = None,
    **options: Any,
) -> list[ReelResult]:
    """Every format's reel of the story (see :func:`build_reel_result`); ``on_progress`` follows them
    all, as seconds of reel written out of the reels' total."""
    formats = story.output.reel_formats
    results = []
    for index, fmt in enumerate(formats):
        follow = None
        if on_progress is not None:

            def follow(done: float, total: float, index: int = index) -> None:
                on_progress(index * total + done, len(formats) * total)  # the formats' lengths match

        results.append(build_reel_result(story, project, fmt, on_progress=follow, **options))
    return results


def planned_timeline(
    story: Story, project: Project, fmt: ReelFormat | None = None
) -> tuple[int, list[Segment]] | None:
    """Where each shot would sit in a reel of format ``fmt`` assembled now from the current clips with
    the story's own settings: (fps, segments), planned by probing only (no encoding); None unless every
    clip exists and is readable."""
    clips, _, settings = reel_settings(story, project, fmt)
    if not clips or not all(c.path.is_file() for c in clips):
        return None
    brand = settings["brand"]
    try:
        segments = planned_segments(
            clips,
            fps=settings["fps"],
            captions=settings["captions"],
            title=settings["title"],
            credits=settings["credits"],
            end_card=brand.end_card if brand else None,
            font=brand.font if brand else None,
        )
    except StoryreelError:
        return None
    return settings["fps"], segments
