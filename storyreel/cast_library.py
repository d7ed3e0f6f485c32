"""The shared cast library: people recorded once, outside any project, used by many stories.

A library is a folder laid out like a project's ``cast/``, plus its own identity cache::

    <library>/<name>/<photo>, faces.json, crops/   written by `storyreel cast add --library`
    <library>/<name>/consent.yaml                  who gave consent, until when, for what (:mod:`.consent`)
    <library>/.storyreel/cache/identities/         the members' identities, shared by every project
    <library>/.storyreel/cache/references/         their reference crops (wan-vace), likewise

Which folder: ``--cast-library DIR``, else ``cast_library:`` in story.yaml (relative to the story's
folder), else ``$STORYREEL_CAST`` (the same order as the model folder). It is the one path a story may
name outside its project. A story takes a member with ``cast: {alice: {library: alice}}`` (renaming and
overriding ``description``, ``face`` or ``combine`` as it likes) or simply by naming ``{alice}`` in a shot
when no local cast member has that name.

Jobs never depend on where a member lives: their keys cover photo bytes and chosen faces, not paths, so
moving a member between a project and a library renders nothing again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from storyreel.consent import (
    CONSENT_USAGE,
    Consent,
    ConsentError,
    read_consent,
    updated_consent,
    write_consent,
)
from storyreel.errors import StoryreelError
from storyreel.project import StateFolders

if TYPE_CHECKING:
    from storyreel.cast import AddResult, ProjectPaths
    from storyreel.story import CastMember

__all__ = [
    "CAST_LIBRARY_ENV",
    "CastLibrary",
    "LibraryMember",
    "add_member",
    "library_entry",
    "member_cache_dir",
    "resolve_cast_library",
    "story_cast_library",
]

CAST_LIBRARY_ENV = "STORYREEL_CAST"
OPTION_SOURCE = "--cast-library"
STORY_SOURCE = "cast_library in story.yaml"
ENV_SOURCE = f"${CAST_LIBRARY_ENV}"
LIBRARY_HINT = f"name one with --cast-library DIR, `cast_library: DIR` in story.yaml or ${CAST_LIBRARY_ENV}"


@dataclass(frozen=True)
class LibraryMember:
    """One person of a library, as a story uses them: absolute photo paths and the description."""

    library: CastLibrary
    name: str
    photos: tuple[Path, ...]
    description: str

    @property
    def directory(self) -> Path:
        """The member's folder."""
        return self.library.member_dir(self.name)


@dataclass(frozen=True)
class CastLibrary(StateFolders):
    """A cast library folder and where its path came from (``source``, shown in messages).

    It has the paths :mod:`storyreel.cast` needs from a project (``root``, ``cast_dir``, ``state_dir``), so
    ``add_cast_member``, ``list_cast``, ``write_cast_sheet`` and ``remove_cast_member`` work on it as is.
    """

    root: Path
    source: str = OPTION_SOURCE

    @property
    def cast_dir(self) -> Path:
        """Where members' folders are: the library folder itself."""
        return self.root

    def __str__(self) -> str:
        return f"cast library {self.root} (from {self.source})"

    def exists(self) -> bool:
        """Whether the library folder exists."""
        return self.root.is_dir()

    def member_dir(self, name: str) -> Path:
        """The folder of member ``name`` (whether it exists or not)."""
        from storyreel.cast import validate_name  # numpy and PIL: only when a library is used

        return self.root / validate_name(name)

    def names(self) -> list[str]:
        """The members (folders with a ``faces.json``), sorted."""
        from storyreel.cast import FACES_FILE

        if not self.exists():
            return []
        try:
            return sorted(p.name for p in self.root.iterdir() if (p / FACES_FILE).is_file())
        except OSError:
            return []

    def require(self) -> CastLibrary:
        """This library, or a StoryreelError when its folder does not exist."""
        if not self.exists():
            raise StoryreelError(
                f"{self} does not exist",
                "check the path; `storyreel cast add PHOTO --name NAME --library` creates the folder",
            )
        return self

    def member(self, name: str) -> LibraryMember:
        """Member ``name`` with absolute photo paths; StoryreelError when absent or damaged."""
        from storyreel.cast import FACES_FILE, read_faces

        directory = self.require().member_dir(name)
        if not (directory / FACES_FILE).is_file():
            known = self.names()
            raise StoryreelError(
                f"no member {name!r} in {self}",
                ("members: " + ", ".join(known))
                if known
                else "the library is empty: add people with "
                f"storyreel cast add PHOTO --name {name} --library",
            )
        data = read_faces(directory)
        photos = tuple(directory / entry.photo for entry in data["photos"])
        missing = [str(photo) for photo in photos if not photo.is_file()]
        if not photos or missing:
            raise StoryreelError(
                f"member {name!r} of {self} has "
                + (f"missing photos: {', '.join(missing)}" if photos else "no photos"),
                f"add them again with storyreel cast add PHOTO --name {name} --library",
            )
        description = str(data.get("description") or "").strip()
        if not description:
            raise StoryreelError(
                f"member {name!r} of {self} has no description",
                f"set one with storyreel cast add PHOTO --name {name} --library --description TEXT",
            )
        return LibraryMember(self, name, photos, description)

    def render_cache_dir(self) -> Path | None:
        """The cache folder renders use for members: the library's when it can be written to, else None
        (a read-only library: the project's cache is used; entries are content-addressed either way)."""
        folder = self.cache_dir
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK | os.X_OK):
            return None
        return folder


def _folder(value: str | Path, base: Path | None = None) -> Path:
    path = Path(value).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    return Path(os.path.normpath(path.absolute()))


def resolve_cast_library(
    option: Path | None, story_value: str | None = None, root: Path | None = None
) -> CastLibrary | None:
    """The cast library in force: ``option`` (``--cast-library``), else the story's ``cast_library``
    (relative to ``root``, the story's folder), else ``$STORYREEL_CAST``; None when none is named."""
    if option is not None and str(option).strip():
        return CastLibrary(_folder(option), OPTION_SOURCE)
    if isinstance(story_value, str) and story_value.strip():
        return CastLibrary(_folder(story_value, root), STORY_SOURCE)
    env = os.environ.get(CAST_LIBRARY_ENV, "").strip()
    if env:
        return CastLibrary(_folder(env), ENV_SOURCE)
    return None


def member_cache_dir(member: CastMember) -> Path | None:
    """Where a story's cast member's identities and reference crops are cached when not in the project:
    the library's cache folder for library members (see :meth:`CastLibrary.render_cache_dir`), else None."""
    found = member.from_library
    return found.library.render_cache_dir() if found is not None else None


def story_cast_library(story_path: Path) -> str | None:
    """The ``cast_library:`` a story file names, read leniently (None when the file or value is unusable):
    the cast commands need it even when the story does not validate yet (it names members to be added)."""
    try:
        data = yaml.safe_load(Path(story_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    value = data.get("cast_library") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value.strip() else None


def library_entry(library: CastLibrary, name: str) -> dict[str, Any]:
    """What story.yaml needs to use member ``name``, as data: the ``cast:`` entry, and ``cast_library``
    when only ``--cast-library`` named the library."""
    entry: dict[str, Any] = {"cast": {name: {"library": name}}}
    return {"cast_library": str(library.root), **entry} if library.source == OPTION_SOURCE else entry


def library_snippet(library: CastLibrary, name: str) -> str:
    """:func:`library_entry` as the text to paste into story.yaml."""
    lines = []
    if "cast_library" in library_entry(library, name):
        lines.append(
            f"cast_library: {json.dumps(str(library.root))}   # or --cast-library / ${CAST_LIBRARY_ENV}"
        )
    lines += ["cast:", f"  {name}: {{library: {name}}}   # or just write {{{name}}} in a shot"]
    return "\n".join(lines)


def add_member(
    target: ProjectPaths,
    name: str,
    photos: Sequence[Path],
    *,
    description: str | None = None,
    face: int | None = None,
    consent: Mapping[str, Any] | None = None,
) -> tuple[AddResult, Consent | None]:
    """``storyreel cast add``: :func:`storyreel.cast.add_cast_member` into a project or a
    :class:`CastLibrary`, plus the member's consent record (``consent``: field → value; None values keep
    the recorded ones). A new library member needs a description and a consent record (who and for what);
    both are checked before anything is copied. Returns what was added and the record now in force."""
    from storyreel.cast import FACES_FILE, add_cast_member, validate_name

    name = validate_name(name)
    directory = Path(target.cast_dir) / name
    changes = dict(consent or {})
    try:
        current = read_consent(directory)
    except ConsentError:
        if not any(value not in (None, [], "") for value in changes.values()):
            raise
        current = None  # a damaged record is replaced by the one given now
    record = updated_consent(current, changes)
    if isinstance(target, CastLibrary):
        if record is None:
            raise StoryreelError(
                f"{name} needs a consent record to join the {target}", f"give {CONSENT_USAGE}"
            )
        if description is None and not (directory / FACES_FILE).is_file():
            raise StoryreelError(
                f"{name} needs a description to join the {target} (stories use it as it is)",
                "give --description TEXT, e.g. --description 'a woman with short black hair'",
            )
    result = add_cast_member(target, name, list(photos), description=description, face=face)
    if record is not None and record != current:
        write_consent(result.directory, record)
    if isinstance(target, CastLibrary):
        result.snippet, result.entry = library_snippet(target, name), {"library": name}
    return result, record
