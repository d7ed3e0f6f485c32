"""Problems in a story file: where (file:line:column, field path), what, and how to fix it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storyreel.errors import Location, StoryreelError
from storyreel.names import is_placeholder_name

__all__ = ["MAX_PROBLEMS_SHOWN", "Problem", "StoryValidationError", "did_you_mean", "path_str"]

MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class Problem:
    """One problem (or warning) in a story file."""

    file: Path
    line: int | None
    column: int | None
    path: str
    message: str
    hint: str | None = None

    @property
    def location(self) -> Location:
        """The :class:`~storyreel.errors.Location` of the problem."""
        return Location(self.file, self.line, self.column)

    def __str__(self) -> str:
        where = f"{self.location}: " + (f"{self.path}: " if self.path else "")
        return where + self.message + (f"\n    hint: {self.hint}" if self.hint else "")


class StoryValidationError(StoryreelError):
    """A story file has problems; :attr:`problems` lists all of them in file order."""

    def __init__(self, problems: list[Problem], file: Path):
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.column or 0))
        count = len(self.problems)
        lines = [f"{file}: {count} problem{'s' if count != 1 else ''}"]
        lines += [f"  {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN]]
        if count > MAX_PROBLEMS_SHOWN:
            lines.append(f"  … and {count - MAX_PROBLEMS_SHOWN} more")
        super().__init__("\n".join(lines), f"fix them and run `storyreel validate {file}` again")


def path_str(loc: tuple[Any, ...]) -> str:
    """A field path as the user reads it: ``shots[2].cast[0]``, ``cast['odd name']``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif is_placeholder_name(str(part)):
            text += f".{part}" if text else str(part)
        else:
            text += f"[{str(part)!r}]"
    return text


def did_you_mean(word: str, choices: list[str]) -> str:
    """``did you mean 'x'? `` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""
