"""`storyreel cast add|list|show|remove`: the people of a project (photos under ``cast/<name>/``) or, with
``--library``, of the shared cast library."""

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
from storyreel.cli.options import (
    CastLibraryOption,
    CastNameArgument,
    JsonOption,
    ModelOption,
    ProjectOption,
)
from storyreel.environment import environment_help
from storyreel.errors import StoryreelError, user_hint
from storyreel.names import NAME_RULE

cast_app = StoryreelTyper(
    no_args_is_help=True, help="Add, list, show and remove the people of a project or of the cast library."
)
app.add_typer(cast_app, name="cast")

LibraryFlag = Annotated[
    bool,
    typer.Option(
        "--library",
        help="The cast library instead of the project: --cast-library DIR, else the story's cast_library, "
        "else $STORYREEL_CAST (--cast-library implies it).",
    ),
]


def _project(path: Path):  # -> storyreel.project.Project
    from storyreel.project import Project

    return Project.find(path)


def _target(project_dir: Path, library: bool, cast_library: Path | None) -> Any:  # Project | CastLibrary
    """The project, or the cast library when ``--library`` or ``--cast-library`` is given."""
    from storyreel.cast_library import LIBRARY_HINT, resolve_cast_library, story_cast_library

    if not library and cast_library is None:
        return _project(project_dir)
    story_value, root = None, None
    if cast_library is None:
        try:
            project = _project(project_dir)
            story_value, root = story_cast_library(project.story_path), project.root
        except StoryreelError:
            pass  # no project here: --cast-library or $STORYREEL_CAST
    found = resolve_cast_library(cast_library, story_value, root)
    if found is None:
        raise StoryreelError("--library: no cast library is named", LIBRARY_HINT)
    return found


def _in_library(target: Any) -> bool:
    from storyreel.cast_library import CastLibrary

    return isinstance(target, CastLibrary)


def _shown(target: Any, name: str) -> str:
    """How a member's folder is shown: ``cast/NAME`` in a project, the full path in a library."""
    return str(target.cast_dir / name) if _in_library(target) else f"cast/{name}"


def _default_model(target: Any) -> Path | None:
    """The model folder ``--model`` defaults to: the project story's ``defaults.model`` (if it loads),
    else ``$STORYREEL_MODEL``."""
    from storyreel.engines.select import resolve_model_dir

    try:
        story = None if _in_library(target) else target.load_story()
    except StoryreelError:
        story = None
    return resolve_model_dir(None, story)[0]


def _consent(directory: Path) -> tuple[Any, str | None]:  # (storyreel.consent.Consent | None, problem)
    """A member's consent record, or None and why it cannot be read."""
    from storyreel.consent import ConsentError, read_consent

    try:
        return read_consent(directory), None
    except ConsentError as err:
        return None, err.message


def _consent_json(consent: Any, problem: str | None) -> dict[str, Any] | None:
    if problem is not None:
        return {"error": problem}
    if consent is None:
        return None
    return {**consent.model_dump(mode="json"), "expired": consent.expired()}


def _consent_cell(consent: Any, problem: str | None) -> str:
    """A member's consent in a few words for `cast list`."""
    if problem is not None:
        return "[red]damaged[/]"
    if consent is None:
        return "-"
    until = consent.valid_until
    when = "no end date" if until is None else f"until {until}"
    if consent.expired():
        when = f"[red]expired {until}[/]"
    return f"{when}; {escape(', '.join(consent.allowed_uses))}"


def _story(project):  # -> storyreel.story.Story | None
    """The project's story, or None when it does not load (the cast commands work without one)."""
    try:
        return project.load_story()
    except StoryreelError:
        return None


def _story_cast(project) -> set[str] | None:
    story = _story(project)
    return None if story is None else set(story.cast)


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


@cast_app.command("add", epilog=environment_help("STORYREEL_MODEL", "STORYREEL_CAST"))
def add(
    photos: Annotated[list[Path], typer.Argument(help="Photo(s) of one person.", metavar="PHOTO")],
    name: Annotated[str, typer.Option("--name", "-n", help=f"Cast name: {NAME_RULE}.")],
    description: Annotated[
        str | None, typer.Option("--description", "-d", help="Words that replace {name} in prompts.")
    ] = None,
    face: Annotated[
        int | None, typer.Option("--face", "-f", help="Which face (1.., left to right) in group photos.")
    ] = None,
    project_dir: ProjectOption = Path("."),
    model: ModelOption = None,
    library: LibraryFlag = False,
    cast_library: CastLibraryOption = None,
    consent_by: Annotated[
        str | None,
        typer.Option("--consent-by", help="Consent: who gave it (the person, or their guardian or agent)."),
    ] = None,
    valid_until: Annotated[
        str | None, typer.Option("--valid-until", help="Consent: last day it is valid (YYYY-MM-DD).")
    ] = None,
    allowed_use: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-use",
            help="Consent: a use it allows (repeat, or a,b): internal, social, advertising, …",
        ),
    ] = None,
    contact: Annotated[str | None, typer.Option("--contact", help="Consent: whom to ask about it.")] = None,
    notes: Annotated[str | None, typer.Option("--notes", help="Consent: anything else.")] = None,
    json_: JsonOption = False,
) -> None:
    """Copy photos into cast/NAME/ (or the cast library), record the chosen face and print the story.yaml
    snippet.

    A library member also needs --description and a consent record (--consent-by, --allowed-use; the
    consent options update it later). With a model folder that has a face encoder, the identities are
    encoded right away."""
    from storyreel.cast_library import add_member, library_entry
    from storyreel.consent import as_uses

    target = _target(project_dir, library, cast_library)
    consent = {
        "given_by": consent_by,
        "valid_until": valid_until,
        "allowed_uses": as_uses(allowed_use or []),
        "contact": contact,
        "notes": notes,
    }
    result, record = add_member(target, name, photos, description=description, face=face, consent=consent)
    where = _shown(target, result.name)
    for entry in result.added:
        reporter.notice(
            escape(
                f"added {where}/{entry.photo}: face {entry.face} of {entry.faces_found}, "
                f"{entry.box.size} px (crop {where}/{entry.crop})"
            )
        )
    for entry in result.unchanged:
        there = f"already there: {where}/{entry.photo} (face {entry.face}), nothing to do"
        reporter.notice(escape(there))
    if record is not None:
        reporter.notice(escape(f"consent: {record.summary()}"))
    for message in result.warnings:
        reporter.warning(message)
    identities, note = None, None
    if model is not None:
        identities = _encode_now(target, result, model)
    elif (default := _default_model(target)) is not None and (default / "face_encoder").is_dir():
        try:
            identities = _encode_now(target, result, default)
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
                "snippet": library_entry(target, result.name)
                if _in_library(target)
                else {"cast": {result.name: result.entry}},
                "snippet_text": result.snippet,
                "library": str(target.root) if _in_library(target) else None,
                "consent": _consent_json(record, None),
            },
        )
        return
    reporter.notice("\nPaste into story.yaml (storyreel never edits it):")
    console.print(result.snippet, highlight=False, markup=False, soft_wrap=True)


@cast_app.command("list", epilog=environment_help("STORYREEL_CAST"))
def list_(
    project_dir: ProjectOption = Path("."),
    library: LibraryFlag = False,
    cast_library: CastLibraryOption = None,
    json_: JsonOption = False,
) -> None:
    """Show the cast (registered under cast/, and story.yaml's): photos, smallest face, whether the chosen
    faces' identities are cached, consent."""
    from storyreel.cast import list_cast
    from storyreel.identity_cache import IdentityCache
    from storyreel.project import IDENTITIES

    target = _target(project_dir, library, cast_library)
    in_library = _in_library(target)
    story = None if in_library else _story(target)
    rows = list_cast(target, story.cast if story is not None else None)
    entries, cells = [], []
    for row in rows:
        consent, problem = _consent(target.cast_dir / row.name)
        cells.append(_consent_cell(consent, problem))
        entries.append(
            {
                "name": row.name,
                "photos": row.photos,
                "face_size": row.face_size,
                "cached_identities": sum(  # for the face chosen in each photo
                    IdentityCache((row.cache_dir or target.cache_dir) / IDENTITIES).has(sha, choice=face)
                    for sha, face in zip(row.photo_hashes, row.faces, strict=True)
                ),
                "in_story": row.in_story,
                "description": row.description,
                "consent": _consent_json(consent, problem),
            }
        )
    if json_:
        where = {"library": str(target.root)} if in_library else {"project": str(target.root)}
        emit_json("cast.list", {**where, "cast": entries})
        return
    if not rows:
        more = " --library" if in_library else ""
        reporter.notice(f"no cast yet: add someone with `storyreel cast add PHOTO --name NAME{more}`")
        return
    if in_library:
        reporter.notice(escape(str(target)))
    columns = ["name", "photos", "face size", "cached identity", "consent", "in story.yaml", "description"]
    table = Table(*(c for c in columns if not (in_library and c == "in story.yaml")))
    for entry, consent_cell in zip(entries, cells, strict=True):
        cached, photos = entry["cached_identities"], entry["photos"]
        status = "yes" if cached == photos and cached else ("no" if not cached else f"{cached}/{photos}")
        listed = [] if in_library else [{None: "?", True: "yes", False: "no"}[entry["in_story"]]]
        size = f"{entry['face_size']} px" if entry["face_size"] else "-"
        cells_ = [escape(entry["name"]), str(photos), size, status, consent_cell, *listed]
        table.add_row(*cells_, escape(entry["description"]))
    console.print(table)


def _consent_lines(directory: Path, consent: Any) -> list[str]:
    """The consent record as `cast show` prints it."""
    from storyreel.consent import CONSENT_FILE

    until = consent.valid_until.isoformat() if consent.valid_until else "no end date"
    return [
        f"consent ({directory / CONSENT_FILE}):",
        f"  given by:     {consent.given_by}",
        f"  valid until:  {until}" + (" (expired)" if consent.expired() else ""),
        f"  allowed uses: {', '.join(consent.allowed_uses)}",
        *([f"  contact:      {consent.contact}"] if consent.contact else []),
        *([f"  notes:        {consent.notes}"] if consent.notes else []),
    ]


@cast_app.command("show", epilog=environment_help("STORYREEL_CAST"))
def show(
    name: CastNameArgument,
    project_dir: ProjectOption = Path("."),
    open_: Annotated[
        bool, typer.Option("--open", help="Open the sheet in the default image viewer.")
    ] = False,
    library: LibraryFlag = False,
    cast_library: CastLibraryOption = None,
    json_: JsonOption = False,
) -> None:
    """Write a sheet image of a member's face crops and print its path, then the consent record."""
    from storyreel.cast import read_faces, write_cast_sheet
    from storyreel.consent import read_consent

    target = _target(project_dir, library, cast_library)
    path = write_cast_sheet(target, name)
    directory = target.cast_dir / name
    consent = read_consent(directory)  # a damaged record: the error names its file and line
    if consent is not None and consent.expired():
        reporter.warning(f"the consent of {name} expired on {consent.valid_until}")
    elif consent is None and _in_library(target):
        reporter.warning(
            f"{name} has no consent record: storyreel cast add PHOTO --name {name} --library "
            "--consent-by WHO --allowed-use USE"
        )
    if json_:
        faces = read_faces(directory)
        emit_json(
            "cast.show",
            {
                "name": name,
                "directory": str(directory.absolute()),
                "sheet": str(path.absolute()),
                "description": faces.get("description", ""),
                "photos": [_photo_json(e) for e in faces["photos"]],
                "library": str(target.root) if _in_library(target) else None,
                "consent": _consent_json(consent, None),
            },
        )
    else:
        console.print(str(path), highlight=False, soft_wrap=True, markup=False)
        if consent is not None:
            console.print("\n".join(_consent_lines(directory, consent)), highlight=False, markup=False)
    if open_:
        typer.launch(str(path))


@cast_app.command("remove", epilog=environment_help("STORYREEL_CAST"))
def remove(
    name: CastNameArgument,
    project_dir: ProjectOption = Path("."),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    library: LibraryFlag = False,
    cast_library: CastLibraryOption = None,
) -> None:
    """Delete cast/NAME/ or the library member's folder (photo copies, faces.json, crops, consent)."""
    from storyreel.cast import remove_cast_member, validate_name

    target = _target(project_dir, library, cast_library)
    name = validate_name(name)
    directory = target.cast_dir / name
    if not directory.is_dir():
        remove_cast_member(target, name)  # raises the error listing the known names
    if not yes and not typer.confirm(f"Delete {directory} and everything in it?", default=False):
        raise typer.Exit(1)
    remove_cast_member(target, name)
    console.print(f"removed {directory}", highlight=False)
    if not _in_library(target) and name in (_story_cast(target) or set()):
        console_err.print(
            f"[yellow]warning:[/] story.yaml still lists {name} under cast: remove it there too",
            highlight=False,
        )
