"""`storyreel init`, `storyreel validate` and `storyreel schema`: the story file and the project folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from storyreel.cli.app import app, console, console_err, reporter
from storyreel.cli.batch import AlreadyReported, each_story, exit_for, print_story_count
from storyreel.cli.console import emit_json
from storyreel.cli.options import (
    CastLibraryOption,
    JsonOption,
    SetOption,
    StoriesArgument,
    expand_stories,
    single_variant,
)
from storyreel.environment import environment_help
from storyreel.reporting import plural, shown_path

if TYPE_CHECKING:
    from storyreel.api import Validation

_MAX_SHOWN = 50  # problems listed by `validate`


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.", show_default=False)],
    example: Annotated[
        bool,
        typer.Option(
            "--example", help="Create the example project (3 people, 4 shots) instead of an empty template."
        ),
    ] = False,
) -> None:
    """Create a project: a commented story.yaml, cast/ and renders/."""
    from storyreel.cast import FACES_FILE
    from storyreel.project import init_project
    from storyreel.story.checks import PHOTO_SUFFIXES

    project = init_project(directory, example=example)
    root = shown_path(project.root)
    console.print(f"[green]created[/] {escape(shown_path(project.story_path))}")
    if example:
        for member in sorted(project.cast_dir.iterdir()):
            for photo in sorted(p for p in member.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES):
                console.print(f"[green]created[/] {escape(shown_path(photo))}")
            console.print(f"[green]recorded[/] the face in {escape(shown_path(member / FACES_FILE))}")
        console.print(
            f"next: [bold]storyreel validate {escape(root)}[/], then [bold]storyreel render {escape(root)}[/]"
        )
    else:
        console.print(
            f"next: add people with [bold]storyreel cast add PHOTO --name NAME --project {escape(root)}[/], "
            f"edit {escape(shown_path(project.story_path))}, then [bold]storyreel validate {escape(root)}[/]"
        )


@app.command(epilog=environment_help("STORYREEL_CAST"))
def validate(
    stories: StoriesArgument = None,
    cast_library: CastLibraryOption = None,
    json_: JsonOption = False,
    set_: SetOption = None,
) -> None:
    """Check stories: print each one's cast and shots, warnings in yellow; exit 1 listing every problem."""
    from storyreel.api import validate as validate_story

    checks: dict[Path, Validation] = {}
    values = single_variant(set_)

    def one(path: Path) -> Validation:
        checked = checks[path] = validate_story(path, values, cast_library=cast_library)
        print_validation(checked)
        if not checked.ok:
            raise AlreadyReported(plural(len(checked.problems), "problem"), "fix them and validate again")
        return checked

    outcomes = each_story(expand_stories(stories), one)
    print_story_count(outcomes)
    if json_:
        entries = [
            {**o.to_json(), **(checks[o.path].to_json() if o.path in checks else {})} for o in outcomes
        ]
        emit_json("validate", {"ok": all(o.status == "ok" for o in outcomes), "stories": entries})
    exit_for(outcomes)


def print_validation(checked: Validation) -> None:
    """Problems (stderr) or the cast and shot tables (stdout) of one story, then its warnings (stderr)."""
    path = escape(shown_path(checked.path))
    if not checked.ok:
        count = len(checked.problems)
        console_err.print(f"[bold red]{path}: {plural(count, 'problem')}[/]", soft_wrap=True)
        for problem in checked.problems[:_MAX_SHOWN]:
            where = escape(str(problem.location))
            field = f" [cyan]{escape(problem.path)}[/]:" if problem.path else ""
            line = f"  [bold]{where}[/]:{field} {escape(problem.message)}"
            console_err.print(line, highlight=False, soft_wrap=True)
            if problem.hint:
                console_err.print(
                    f"      [dim]hint: {escape(problem.hint)}[/]", highlight=False, soft_wrap=True
                )
        if count > _MAX_SHOWN:
            console_err.print(f"  … and {count - _MAX_SHOWN} more")
        return
    loaded = checked.story
    assert loaded is not None
    cast = Table(title="Cast", title_justify="left")
    for column in ("name", "photos", "face", "description"):
        cast.add_column(column, overflow="fold")
    for name, member in loaded.cast.items():
        photos = ", ".join(
            shown_path(p) if not p.is_relative_to(loaded.root) else str(p.relative_to(loaded.root))
            for p in member.photos
        )
        if member.from_library is not None:
            photos = f"library: {member.from_library.name} ({plural(len(member.photos), 'photo')})"
        cast.add_row(name, escape(photos), str(member.face or ""), escape(member.description or ""))

    shots = Table(title="Shots", title_justify="left")
    for column in ("#", "id", "cast (left → right)", "seconds", "seed", "transition", "caption"):
        shots.add_column(column, overflow="fold")
    total = 0.0
    for index, shot in enumerate(loaded.shots, 1):
        total += shot.seconds or 0.0
        transition = shot.transition
        moves = transition.type if transition.type == "cut" else f"{transition.type} {transition.seconds:g}s"
        shots.add_row(
            str(index),
            escape(shot.id),
            escape(", ".join(shot.cast or [])) or "[dim]nobody[/]",
            f"{shot.seconds:g}" + (f" ({shot.frames} fr)" if shot.frames else ""),
            str(shot.seed) if shot.seed is not None else "[dim]auto[/]",
            moves,
            escape(shot.caption or ""),
        )
    console.print(
        f"[bold]{escape(loaded.title)}[/] — {path}: {plural(len(loaded.cast), 'person', 'people')}, "
        f"{plural(len(loaded.shots), 'shot')}, {total:g} s",
        highlight=False,
        soft_wrap=True,
    )
    if loaded.library is not None and any(m.from_library for m in loaded.cast.values()):
        console.print(escape(str(loaded.library)), highlight=False, soft_wrap=True)
    if loaded.use:
        console.print(f"use: {escape(', '.join(loaded.use))}", highlight=False)
    if loaded.cast:
        console.print(cast)
    console.print(shots)
    if loaded.output.formats:
        reels = ", ".join(f"{f.file} ({f.size}, {f.fps} fps)" for f in loaded.output.reel_formats)
        console.print(f"reels: {escape(reels)}", highlight=False, soft_wrap=True)
    for warning in loaded.warnings:
        reporter.warning(str(warning))
    console.print(
        "[green]valid[/]" + (f" with {plural(len(loaded.warnings), 'warning')}" if loaded.warnings else "")
    )


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of story.yaml (for editor autocompletion)."""
    from storyreel.fsutil import atomic_write_text
    from storyreel.story import story_json_schema

    text = json.dumps(story_json_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(output, text)
        console.print(f"[green]wrote[/] {escape(shown_path(output))}")
