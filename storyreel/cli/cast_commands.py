"""`storyreel cast add|list|show|remove`: the people of a project (photos under ``cast/<name>/``)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ingredients_model.errors import IngredientsError
from storyreel.cli.app import StoryreelTyper, app, console, console_err, reporter
from storyreel.cli.console import emit_json
from storyreel.cli.options import CastNameArgument, JsonOption, ModelOption, ProjectOption
from storyreel.environment import environment_help
from storyreel.errors import StoryreelError, user_hint

cast_app = StoryreelTyper(no_args_is_help=True, help="Add, list, show and remove the people of a project.")
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


def _photo_json(entry: Any) -> dict[str, Any]:  # entry: storyreel.cast.PhotoFace
    return {
        "photo": entry.photo,
        "face": entry.face,
        "faces_found": entry.faces_found,
        "face_size": entry.box.size,
        "crop": entry.crop,
        "sha256": entry.sha256,
    }


def _encode_now(project: Any, result: Any, model: Path) -> list[dict[str, Any]]:
    """Build (or hit) the identity cache for the member's photos with the model's face encoder, with a
    progress bar; returns one entry per photo (photo, state, seconds)."""
    from ingredients_model.faces import load_face_encoder
    from storyreel.identity_cache import IdentityCache

    with reporter.status(f"loading the face encoder from {escape(str(model))} …"):
        encoder = load_face_encoder(model / "face_encoder")
    cache = IdentityCache(project.identity_cache_dir)
    done = []
    with reporter.progress() as progress:
        task = progress.add_task(escape(f"identities of {result.name}"), total=len(result.photos))
        for entry in result.photos:
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                item = cache.get_photo(result.directory / entry.photo, encoder)
            for warning in caught:
                reporter.warning(str(warning.message))
            seconds = time.perf_counter() - start
            state = "cache hit" if item.hit else "encoded"
            progress.advance(task)
            reporter.notice(escape(f"identity of {entry.photo}: {state} in {seconds:.2f}s"))
            done.append({"photo": entry.photo, "state": state, "seconds": round(seconds, 3)})
    return done


@cast_app.command("add", epilog=environment_help("STORYREEL_MODEL"))
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
    json_: JsonOption = False,
) -> None:
    """Copy photos into cast/NAME/, record the chosen face and print the story.yaml snippet.

    With a model folder that has a face encoder, the identities are encoded right away."""
    from storyreel.cast import add_cast_member

    project = _project(project_dir)
    result = add_cast_member(project, name, photos, description=description, face=face)
    for entry in result.added:
        reporter.notice(
            escape(
                f"added cast/{name}/{entry.photo}: face {entry.face} of {entry.faces_found}, "
                f"{entry.box.size} px (crop cast/{name}/{entry.crop})"
            )
        )
    for entry in result.unchanged:
        there = f"already there: cast/{name}/{entry.photo} (face {entry.face}), nothing to do"
        reporter.notice(escape(there))
    for message in result.warnings:
        reporter.warning(message)
    identities, note = None, None
    if model is not None:
        identities = _encode_now(project, result, model)
    elif (default := _default_model(project)) is not None and (default / "face_encoder").is_dir():
        try:
            identities = _encode_now(project, result, default)
        except IngredientsError as err:  # the photos are added; the identity is built at render time
            note = f"identity not encoded now: {err.message}"
            reporter.notice(f"[yellow]note:[/] {escape(note)}")
            if hint := user_hint(err):
                reporter.notice(f"[yellow]hint:[/] {escape(hint)}")
    if json_:
        emit_json(
            "cast.add",
            {
                "name": result.name,
                "directory": str(result.directory.absolute()),
                "added": [_photo_json(e) for e in result.added],
                "unchanged": [_photo_json(e) for e in result.unchanged],
                "warnings": result.warnings,
                "identities": identities,
                "identity_note": note,
                "snippet": {"cast": {result.name: result.entry}},
                "snippet_text": result.snippet,
            },
        )
        return
    reporter.notice("\nPaste into story.yaml (storyreel never edits it):")
    console.print(result.snippet, highlight=False, markup=False, soft_wrap=True)


@cast_app.command("list")
def list_(project_dir: ProjectOption = Path("."), json_: JsonOption = False) -> None:
    """Show the cast: photos, smallest face size, whether identities are cached."""
    from storyreel.cast import list_cast
    from storyreel.identity_cache import IdentityCache

    project = _project(project_dir)
    rows = list_cast(project)
    cache = IdentityCache(project.identity_cache_dir)
    in_story = _story_cast(project)
    entries = []
    for row in rows:
        entries.append(
            {
                "name": row.name,
                "photos": row.photos,
                "face_size": row.face_size,
                "cached_identities": sum(cache.has(sha) for sha in row.photo_hashes),
                "in_story": None if in_story is None else row.name in in_story,
                "description": row.description,
            }
        )
    if json_:
        emit_json("cast.list", {"project": str(project.root), "cast": entries})
        return
    if not rows:
        reporter.notice("no cast yet: add someone with `storyreel cast add PHOTO --name NAME`")
        return
    table = Table("name", "photos", "face size", "cached identity", "in story.yaml", "description")
    for entry in entries:
        cached, photos = entry["cached_identities"], entry["photos"]
        status = "yes" if cached == photos and cached else ("no" if not cached else f"{cached}/{photos}")
        listed = {None: "?", True: "yes", False: "no"}[entry["in_story"]]
        size = f"{entry['face_size']} px" if entry["face_size"] else "-"
        table.add_row(escape(entry["name"]), str(photos), size, status, listed, escape(entry["description"]))
    console.print(table)


@cast_app.command("show")
def show(
    name: CastNameArgument,
    project_dir: ProjectOption = Path("."),
    open_: Annotated[
        bool, typer.Option("--open", help="Open the sheet in the default image viewer.")
    ] = False,
    json_: JsonOption = False,
) -> None:
    """Write a sheet image of a member's face crops and print its path."""
    from storyreel.cast import read_faces, write_cast_sheet

    project = _project(project_dir)
    path = write_cast_sheet(project, name)
    if json_:
        faces = read_faces(project.cast_dir / name)
        emit_json(
            "cast.show",
            {
                "name": name,
                "directory": str((project.cast_dir / name).absolute()),
                "sheet": str(path.absolute()),
                "description": faces.get("description", ""),
                "photos": [_photo_json(e) for e in faces["photos"]],
            },
        )
    else:
        console.print(str(path), highlight=False, soft_wrap=True, markup=False)
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
