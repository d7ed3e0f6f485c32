"""`storyreel reel`: re-assemble the reel (and the review page) from finished clips; never renders."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from storyreel.cli.app import app, console, reporter
from storyreel.cli.batch import each_story, exit_for, print_story_count
from storyreel.cli.options import (
    CastLibraryOption,
    KeepGoingOption,
    StoriesArgument,
    expand_stories,
    keep_going_for,
)
from storyreel.environment import environment_help
from storyreel.reporting import shown_path


@app.command("reel", epilog=environment_help("STORYREEL_FONT", "STORYREEL_CAST"))
def reel(
    stories: StoriesArgument = None,
    captions: Annotated[
        str | None,
        typer.Option(
            "--captions", help="burn | subtitles | both | none (default: the story's output.captions)"
        ),
    ] = None,
    retime: Annotated[
        str | None,
        typer.Option(
            "--retime",
            help="duplicate frames to reach the reel fps (default), or interpolate (motion, slower)",
        ),
    ] = None,
    video_format: Annotated[
        str | None,
        typer.Option("--format", help="mp4 (H.264) or webm (VP9); default from the story's output.file"),
    ] = None,
    review: Annotated[
        bool, typer.Option("--review/--no-review", help="also write renders/index.html")
    ] = True,
    keep_going: KeepGoingOption = None,
    cast_library: CastLibraryOption = None,
) -> None:
    """Assemble the reel from the clips in renders/ (run `storyreel render` first to make them).

    The options here are for this assembly only: story.yaml stays the source of truth, so the next
    `storyreel render` re-assembles the reel with the story's own settings when this one used other
    options (change output.captions / output.file in story.yaml to make a choice stick).
    """
    paths = expand_stories(stories)
    options: dict[str, Any] = {}
    if retime is not None:
        options["retime"] = retime
    if captions is not None:
        options["captions"] = captions
    outcomes = each_story(
        paths,
        lambda path: assemble(
            path, review=review, video_format=video_format, cast_library=cast_library, **options
        ),
        keep_going=keep_going_for(keep_going, paths),
    )
    print_story_count(outcomes)
    exit_for(outcomes)


def assemble(
    path: Path, *, review: bool, video_format: str | None, cast_library: Path | None = None, **options: Any
) -> Path:
    """Assemble one story's reel (and review page) with a progress bar; print what was made."""
    from storyreel.outputs import build_outputs
    from storyreel.project import Project
    from storyreel.reel import ReelWarning
    from storyreel.story import load_story

    loaded = load_story(Project.find(path).story_path, cast_library=cast_library)
    project = Project.from_story(loaded)
    if video_format is not None:
        options["video_format"] = video_format
        options["output"] = project.reel_path.with_suffix(f".{video_format}")
    label = escape(shown_path(loaded.path))
    with warnings.catch_warnings(record=True) as caught, reporter.bar(f"{label}: reel") as update:
        warnings.simplefilter("always", ReelWarning)
        result, page = build_outputs(loaded, project, review=review, progress=update, **options)
    for warning in caught:
        reporter.warning(f"{shown_path(loaded.path)}: {warning.message}")
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
    return result.path
