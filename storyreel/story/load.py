"""Reading a story: file → YAML with positions → pydantic → cross-field checks, every problem at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from storyreel.errors import StoryreelError
from storyreel.fsutil import special_kind
from storyreel.story.checks import Checker, is_dir, is_file
from storyreel.story.messages import pydantic_problem
from storyreel.story.positions import compose
from storyreel.story.problems import Problem, StoryValidationError
from storyreel.story.schema import CastMember, Story
from storyreel.story.variables import apply_variables

if TYPE_CHECKING:
    from storyreel.cast_library import LibraryMember

__all__ = ["MAX_FILE_BYTES", "load_story", "parse_story"]

MAX_FILE_BYTES = 1_000_000


def parse_story(
    text: str, path: Path, variables: Mapping[str, str] | None = None, *, cast_library: Path | None = None
) -> Story:
    """Validate story ``text`` as if read from ``path`` (relative paths resolve against its folder);
    ``variables`` override the story's ``vars:`` (``--set``); ``cast_library``: ``--cast-library`` (see
    :func:`storyreel.cast_library.resolve_cast_library`)."""
    shown = Path(path)
    absolute = Path(os.path.normpath(shown.absolute()))
    root = absolute.parent
    doc = compose(text, shown)
    values = apply_variables(doc, variables)
    checker = Checker(doc, root, cast_library, variables=variables)
    if checker.too_big():
        raise StoryValidationError(doc.problems, shown)
    story: Story | None = None
    try:
        story = Story.model_validate(doc.data, context={"root": root, "story_file": absolute.name})
    except ValidationError as err:
        for error in err.errors(include_url=False):
            problem = pydantic_problem(doc, error)
            if problem is not None:
                doc.problems.append(problem)
    warnings = checker.run()
    if doc.problems or story is None:
        raise StoryValidationError(doc.problems, shown)
    story._path = absolute
    story._variables = values
    story._warnings = sorted(warnings, key=lambda p: (p.line or 0, p.column or 0))
    story._consent_warnings = list(checker.consent_warnings)
    story._library = checker.library
    _take_from_library(story, checker.library_members)
    return story


def _take_from_library(story: Story, members: dict[str, LibraryMember]) -> None:
    """Fill in the people who come from the cast library: photos and description from the member (the
    story's own description, face and combine win); names only used in shots are added as they are."""
    for name, found in members.items():
        member = story.cast.get(name)
        if member is None:
            member = story.cast[name] = CastMember(library=found.name, description=found.description)
        member.photos = list(found.photos)
        if member.description is None:
            member.description = found.description
        member._library = found


def load_story(
    path: Path, variables: Mapping[str, str] | None = None, *, cast_library: Path | None = None
) -> Story:
    """Load and validate a story file (or a project folder's ``story.yaml``); ``variables`` override
    its ``vars:`` (``--set name=value``); ``cast_library`` is ``--cast-library`` (it wins over the
    story's ``cast_library:`` and ``$STORYREEL_CAST``).

    Raises :class:`StoryValidationError` listing every problem, each at file:line:column with a hint.
    """
    path = Path(path)
    if is_dir(path) and is_file(path / "story.yaml"):
        path = path / "story.yaml"
    return parse_story(_read_text(path, path), path, variables, cast_library=cast_library)


def _read_text(path: Path, shown: Path) -> str:
    if is_dir(path):
        raise StoryreelError(f"{shown} is a folder, not a story file", f"use {shown / 'story.yaml'}")
    if kind := special_kind(path):  # never open a FIFO: reading it could wait forever
        raise StoryreelError(f"{shown} is {kind}, not a story file", "give the path of a story.yaml")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # never more, whatever the file claims to be
    except FileNotFoundError:
        raise StoryreelError(
            f"story file not found: {shown}", "check the path, or run `storyreel init DIR`"
        ) from None
    except OSError as err:
        raise StoryreelError(f"cannot read {shown}: {err.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        message = f"the file is larger than {MAX_FILE_BYTES:,} bytes, the limit for a story"
        problem = Problem(shown, None, None, "", message, "is this really a story.yaml?")
        raise StoryValidationError([problem], shown)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise StoryValidationError(
            [
                Problem(
                    shown,
                    line,
                    column,
                    "",
                    f"not UTF-8 text (byte 0x{data[err.start]:02x})",
                    "save the file as UTF-8",
                )
            ],
            shown,
        ) from None
