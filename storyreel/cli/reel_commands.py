"""`storyreel reel`: re-assemble the reel (and the review page) from finished clips; never renders."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from storyreel.cli.app import app, console, reporter
from storyreel.cli.batch import each_story, exit_for, print_story_count
from storyreel.cli.console import emit_json
from storyreel.cli.options import (
    CastLibraryOption,
    EngineOption,
    JsonOption,
    KeepGoingOption,
    ModelOption,
    SetOption,
    StoriesArgument,
    expand_stories,
    keep_going_for,
    single_variant,
)
from storyreel.environment import environment_help
from storyreel.errors import StoryreelError, StoryreelWarning
from storyreel.reel import ReelResult, RetimeMode, VideoFormat
from storyreel.reporting import shown_path
from storyreel.timeline import CaptionMode

if TYPE_CHECKING:
    from storyreel.project import Project
    from storyreel.story import Story


@app.command("reel", epilog=environment_help("STORYREEL_FONT", "STORYREEL_CAST"))
def reel(
    stories: StoriesArgument = None,
    captions: Annotated[
        CaptionMode | None,
        typer.Option(
            "--captions", help="Captions (default: the story's output.captions).", show_default=False
        ),
    ] = None,
    retime: Annotated[
        RetimeMode | None,
        typer.Option(
            "--retime",
            help="duplicate frames to reach the reel fps (default), or interpolate (motion, slower).",
            show_default=False,
        ),
    ] = None,
    video_format: Annotated[
        VideoFormat | None,
        typer.Option(
            "--format",
            help="mp4 (H.264) or webm (VP9); default from the story's output.file.",
            show_default=False,
        ),
    ] = None,
    review: Annotated[bool, typer.Option("--review/--no-review", help="also write the review page")] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Assemble even from clips that are stale or damaged.")
    ] = False,
    engine: EngineOption = None,
    model: ModelOption = None,
    keep_going: KeepGoingOption = None,
    cast_library: CastLibraryOption = None,
    set_: SetOption = None,
    json_: JsonOption = False,
) -> None:
    """Assemble the reels (one per format) from the story's clips (run `storyreel render` first).

    The options here are for this assembly only: story.yaml stays the source of truth, so the next
    `storyreel render` re-assembles the reel with the story's own settings when this one used other
    options (change output.captions / output.file in story.yaml to make a choice stick).

    Clips made from other inputs than story.yaml now gives (stale), or that fail their check (damaged),
    are refused unless --force; --engine and --model say which engine's jobs the clips should match
    (default: the one `storyreel render` would use).
    """
    paths = expand_stories(stories)
    options: dict[str, Any] = {}
    if retime is not None:
        options["retime"] = retime
    if captions is not None:
        options["captions"] = captions
    checks = {"engine": engine, "model": model, "force": force}
    values = single_variant(set_)
    outcomes = each_story(
        paths,
        lambda path: assemble(
            path,
            values,
            review=review,
            video_format=video_format,
            cast_library=cast_library,
            checks=checks,
            **options,
        ),
        keep_going=keep_going_for(keep_going, paths),
    )
    print_story_count(outcomes)
    if json_:
        entries = [{**o.to_json(), **(o.value.to_json() if o.value else {})} for o in outcomes]
        emit_json("reel", {"ok": all(o.status == "ok" for o in outcomes), "stories": entries})
    exit_for(outcomes)


@dataclass
class Assembled:
    """One story's assembly: its reels (one per format) and review page."""

    reels: list[ReelResult]
    review: Path | None

    def to_json(self) -> dict[str, Any]:
        """The story's fields in ``storyreel reel --json``."""
        return {
            "reels": [result.to_json() for result in self.reels],
            "review": str(self.review.absolute()) if self.review else None,
        }


def check_clips_current(
    story: Story, project: Project, *, engine: str | None, model: Path | None, force: bool
) -> None:
    """Refuse (unless ``force``: warn) when clips are stale or damaged for the engines `storyreel render`
    would use (:func:`storyreel.api.plan`); warn when that cannot be known (e.g. no model folder). Clips
    the clip store holds for this story (``stored``: another story or variant rendered them) are linked
    into its view."""
    from storyreel.api import plan
    from storyreel.clip_store import find_stored, link_into_view

    try:
        planned = plan(story, engine=engine, model=model)
    except StoryreelError as err:
        warnings.warn(f"cannot check whether the clips are current: {err.message}", StoryreelWarning, 2)
        return
    for entry in planned.jobs:
        if entry.status == "stored" and (found := find_stored(project, entry.job)) is not None:
            link_into_view(project, entry.job, *found)
    bad = {entry.job.shot_id: entry.status for entry in planned.jobs if entry.status in ("stale", "damaged")}
    if not bad:
        return
    listing = ", ".join(f"{shot} ({status})" for shot, status in bad.items())
    what = (
        f"{len(bad)} of {len(planned.jobs)} clips do not match {story.path.name} for the {planned.engine} "
        f"engine: {listing}"
    )
    if force:
        warnings.warn(f"{what}; assembling them anyway (--force)", StoryreelWarning, 2)
        return
    raise StoryreelError(
        what,
        hint=f"render them again with `storyreel render {shown_path(project.story_path)}` (with the "
        "--engine/--model they were rendered with), check with `storyreel plan`, or pass --force to "
        "assemble these clips anyway",
    )


def assemble(
    path: Path,
    variables: dict[str, str],
    *,
    review: bool,
    video_format: str | None,
    cast_library: Path | None = None,
    checks: dict[str, Any] | None = None,
    **options: Any,
) -> Assembled:
    """Assemble one story's reels (one per format; and review page) with a progress bar; print what was
    made.

    ``checks``: ``engine``, ``model`` and ``force`` for :func:`check_clips_current` (None: no check)."""
    from storyreel.outputs import build_outputs
    from storyreel.project import Project
    from storyreel.reel import ReelWarning
    from storyreel.runner import story_label
    from storyreel.story import load_story

    loaded = load_story(Project.find(path).story_path, variables, cast_library=cast_library)
    project = Project.from_story(loaded)
    if checks is not None:
        check_clips_current(loaded, project, **checks)
    if video_format is not None:
        options["video_format"] = video_format  # each format's file with this suffix
    label = story_label(loaded.path, loaded.variables)
    with warnings.catch_warnings(record=True) as caught, reporter.bar(f"{escape(label)}: reel") as update:
        warnings.simplefilter("always", ReelWarning)
        results, page = build_outputs(loaded, project, review=review, progress=update, **options)
    for warning in caught:
        reporter.warning(f"{label}: {warning.message}")
    for result in results:
        how = "stream copy (clips already match)" if result.fast_path else "re-encoded"
        console.print(
            f"[green]reel:[/] {escape(shown_path(result.path))} — {len(result.segments)} shots, "
            f"{result.frames} frames, {result.duration:.2f} s at {result.fps} fps, "
            f"{result.width}x{result.height}, {how}, {result.seconds:.1f} s",
            highlight=False,
        )
        if result.subtitles:
            console.print(f"[green]captions:[/] {escape(shown_path(result.subtitles))}", highlight=False)
    if page is not None:
        console.print(f"[green]review page:[/] {escape(shown_path(page))}", highlight=False)
    return Assembled(results, page)
