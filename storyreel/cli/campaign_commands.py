"""`storyreel campaign`: the campaign page over several stories and variants (never renders)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from storyreel.cli.app import app, console
from storyreel.cli.console import emit_json
from storyreel.cli.options import (
    CastLibraryOption,
    JsonOption,
    SetOption,
    StoriesArgument,
    expand_stories,
    variables,
)
from storyreel.environment import environment_help
from storyreel.reporting import shown_path


@app.command("campaign", epilog=environment_help("STORYREEL_CAST"))
def campaign(
    stories: StoriesArgument = None,
    set_: SetOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Page to write (default: campaign.html beside the stories)."),
    ] = None,
    cast_library: CastLibraryOption = None,
    json_: JsonOption = False,
) -> None:
    """Write the campaign page: every story, variant and format with posters and plain-word eval results."""
    from storyreel.campaign import write_campaign
    from storyreel.runner import load_stories

    loaded = load_stories(expand_stories(stories), variables(set_), cast_library=cast_library)
    page = write_campaign(loaded, output)
    console.print(f"[green]campaign:[/] {escape(shown_path(page))} — {len(loaded)} stories", highlight=False)
    if json_:
        entries = [{"story": str(story.path), "variables": story.variables} for story in loaded]
        emit_json("campaign", {"ok": True, "campaign": str(page.absolute()), "stories": entries})
