"""`storyreel cast add|list|show|remove`: the people of a project (photos under ``cast/<name>/``)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ingredients_model.errors import IngredientsError
from storyreel.cli.app import app, console, console_err
from storyreel.cli.options import CastNameArgument, ModelOption, ProjectOption
from storyreel.errors import StoryreelError, user_hint

cast_app = typer.Typer(no_args_is_help=True, help="Add, list, show and remove the people of a project.")
app.add_typer(cast_app, name="cast")


def _project(path: Path):  # -> storyreel.project.Project
    from storyreel.project import Project

    return Project.find(path)


def _default_model(project) -> Path | None:
    """The model folder ``--model`` defaults to: the story's ``defaults.model`` (if the story loads), else
    ``$STORYREEL_MODEL``."""
    from storyreel.engines.select import resolve_model_dir

    try:
        story = project.load_story()
    except StoryreelError:
        story = None
    return resolve_model_dir(None, story)[0]


def _story_cast(project) -> set[str] | None:
    try:
        return set(project.load_story().cast)
    except StoryreelError:
        return None


def _encode_now(project, result, model: Path) -> None:
    """Build (or hit) the identity cache for the member's photos with the model's face encoder."""
    from ingredients_model.faces import load_face_encoder
    from storyreel.identity_cache import IdentityCache

    encoder = load_face_encoder(model / "face_encoder")
    cache = IdentityCache(project.identity_cache_dir)
    for entry in result.photos:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            item = cache.get_photo(result.directory / entry.photo, encoder)
        for warning in caught:
            console_err.print(f"[yellow]warning:[/] {warning.message}", highlight=False)
        state = "cache hit" if item.hit else "encoded"
        console.print(
            f"identity of {entry.photo}: {state} in {time.perf_counter() - start:.2f}s", highlight=False
        )


@cast_app.command("add")
def add(
    photos: Annotated[list[Path], typer.Argument(help="Photo(s) of one person.", metavar="PHOTO")],
    name: Annotated[
        str, typer.Option("--name", "-n", help="Cast name: lower-case letters, digits, _ and -.")
    ],
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="Words that replace {name} in prompts.")
    ] = None,
    face: Annotated[
        int | None, typer.Option("--face", "-f", help="Which face (1.., left to right) in group photos.")
    ] = None,
    project_dir: ProjectOption = Path("."),
    model: ModelOption = None,
) -> None:
    """Copy photos into cast/NAME/, record the chosen face and print the story.yaml snippet.

    With a model folder that has a face encoder, the identities are encoded right away."""
    from storyreel.cast import add_cast_member

    project = _project(project_dir)
    result = add_cast_member(project, name, photos, description=description, face=face)
    for entry in result.added:
        console.print(
            f"[green]added[/] cast/{name}/{entry.photo}: face {entry.face} of {entry.faces_found}, "
            f"{entry.box.size} px (crop cast/{name}/{entry.crop})",
            highlight=False,
        )
    for entry in result.unchanged:
        console.print(
            f"already there: cast/{name}/{entry.photo} (face {entry.face}), nothing to do", highlight=False
        )
    for message in result.warnings:
        console_err.print(f"[yellow]warning:[/] {message}", highlight=False)
    if model is not None:
        _encode_now(project, result, model)
    elif (default := _default_model(project)) is not None and (default / "face_encoder").is_dir():
        try:
            _encode_now(project, result, default)
        except IngredientsError as err:  # the photos are added; the identity is built at render time
            console_err.print(f"[yellow]note:[/] identity not encoded now: {err.message}", highlight=False)
            if hint := user_hint(err):
                console_err.print(f"[yellow]hint:[/] {hint}", highlight=False)
    console.print("\nPaste into story.yaml (storyreel never edits it):", highlight=False)
    console.print(result.snippet, highlight=False, markup=False, soft_wrap=True)


@cast_app.command("list")
def list_(project_dir: ProjectOption = Path(".")) -> None:
    """Show the cast: photos, smallest face size, whether identities are cached."""
    from storyreel.cast import list_cast
    from storyreel.identity_cache import IdentityCache

    project = _project(project_dir)
    rows = list_cast(project)
    if not rows:
        console.print("no cast yet: add someone with `storyreel cast add PHOTO --name NAME`", highlight=False)
        return
    cache = IdentityCache(project.identity_cache_dir)
    in_story = _story_cast(project)
    table = Table("name", "photos", "face size", "cached identity", "in story.yaml", "description")
    for row in rows:
        cached = sum(cache.has(sha) for sha in row.photo_hashes)
        status = (
            "yes" if cached == row.photos and cached else ("no" if not cached else f"{cached}/{row.photos}")
        )
        listed = "?" if in_story is None else ("yes" if row.name in in_story else "no")
        size = f"{row.face_size} px" if row.face_size else "-"
        table.add_row(row.name, str(row.photos), size, status, listed, row.description)
    console.print(table)


@cast_app.command("show")
def show(
    name: CastNameArgument,
    project_dir: ProjectOption = Path("."),
    open_: Annotated[
        bool, typer.Option("--open", help="Open the sheet in the default image viewer.")
    ] = False,
) -> None:
    """Write a sheet image of a member's face crops and print its path."""
    from storyreel.cast import write_cast_sheet

    path = write_cast_sheet(_project(project_dir), name)
    console.print(str(path), highlight=False, soft_wrap=True)
    if open_:
        typer.launch(str(path))


@cast_app.command("remove")
def remove(
    name: CastNameArgument,
    project_dir: ProjectOption = Path("."),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete cast/NAME/ (its photo copies, faces.json and crops)."""
    from storyreel.cast import remove_cast_member, validate_name

    project = _project(project_dir)
    directory = project.cast_dir / validate_name(name)
    if not directory.is_dir():
        remove_cast_member(project, name)  # raises the error listing the known names
    if not yes and not typer.confirm(f"Delete {directory} and everything in it?", default=False):
        raise typer.Exit(1)
    remove_cast_member(project, name)
    console.print(f"removed {directory}", highlight=False)
    if name in (_story_cast(project) or set()):
        console_err.print(
            f"[yellow]warning:[/] story.yaml still lists {name} under cast: remove it there too",
            highlight=False,
        )
