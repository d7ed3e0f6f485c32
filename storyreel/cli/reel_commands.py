"""`storyreel reel`: re-assemble the reel (and the review page) from finished clips; never renders."""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import typer

from storyreel.cli.app import app, console, console_err
from storyreel.cli.options import StoryArgument


@app.command("reel")
def reel(
    story: StoryArgument,
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
) -> None:
    """Assemble the reel from the clips in renders/ (run `storyreel render` first to make them).

    The options here are for this assembly only: story.yaml stays the source of truth, so the next
    `storyreel render` re-assembles the reel with the story's own settings when this one used other
    options (change output.captions / output.file in story.yaml to make a choice stick).
    """
    from storyreel.outputs import build_outputs
    from storyreel.project import Project
    from storyreel.reel import ReelWarning
    from storyreel.story import load_story

    loaded = load_story(Project.find(story).story_path)
    project = Project.from_story(loaded)
    options: dict[str, Any] = {}
    if retime is not None:
        options["retime"] = retime
    if captions is not None:
        options["captions"] = captions
    if video_format is not None:
        options["video_format"] = video_format
        options["output"] = project.reel_path.with_suffix(f".{video_format}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReelWarning)
        result, page = build_outputs(loaded, project, review=review, **options)
    for warning in caught:
        console_err.print(f"[yellow]warning:[/] {warning.message}", highlight=False)
    how = "stream copy (clips already match)" if result.fast_path else "re-encoded"
    console.print(
        f"[green]reel:[/] {result.path} — {len(result.segments)} shots, {result.frames} frames, "
        f"{result.duration:.2f} s at {result.fps} fps, {result.width}x{result.height}, {how}, "
        f"{result.seconds:.1f} s",
        highlight=False,
    )
    if result.subtitles:
        console.print(f"[green]captions:[/] {result.subtitles}", highlight=False)
    if page is not None:
        console.print(f"[green]review page:[/] {page}", highlight=False)
