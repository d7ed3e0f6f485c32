"""The one exception type users see, and the location it can point at."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Location:
    """Where in a user's file a problem is (1-based line and column)."""

    file: Path | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [str(self.file) if self.file else "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class StoryreelError(Exception):
    """An error meant for the user: what went wrong, and how to fix it.

    The CLI prints ``message`` and ``hint`` (and ``location`` when given) and exits non-zero,
    without a traceback unless ``--debug`` is passed.
    """

    def __init__(self, message: str, hint: str | None = None, *, location: Location | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.location = location

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        return f"{text}\n  hint: {self.hint}" if self.hint else text
