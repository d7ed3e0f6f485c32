"""The one exception type users see, the location it can point at, and how model errors are shown.

:class:`StoryreelError` shares its base (:class:`~ingredients_model.errors.HintedError`: a message and a
hint) with the model package's errors, so the CLI shows both the same way; this module only adds where
in a user's file the problem is, and the product's own wording of the model package's hints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ingredients_model.errors import HintedError, MissingWeightsError

__all__ = ["HintedError", "Location", "StoryreelError", "StoryreelWarning", "user_hint"]


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


def user_hint(err: HintedError) -> str | None:
    """``err.hint`` in storyreel's terms: missing model files are fixed with `storyreel models download`."""
    if isinstance(err, MissingWeightsError):
        fix = f"run `storyreel models download {err.model_dir}` (it resumes partial downloads)"
        return f"{fix}; {err.also}" if err.also else fix
    return err.hint


class StoryreelError(HintedError):
    """An error meant for the user: what went wrong, and how to fix it.

    The CLI prints ``message`` and ``hint`` (and ``location`` when given) and exits non-zero,
    without a traceback unless ``--debug`` is passed.
    """

    def __init__(self, message: str, hint: str | None = None, *, location: Location | None = None):
        super().__init__(message, hint)
        self.location = location

    @classmethod
    def from_error(cls, err: HintedError, prefix: str = "") -> StoryreelError:
        """``err`` (from this package or the model package) as a StoryreelError, ``prefix`` before its
        message, its hint in storyreel's terms (:func:`user_hint`) and its location kept."""
        location = getattr(err, "location", None)
        return cls(prefix + err.message, user_hint(err), location=location)

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class StoryreelWarning(UserWarning):
    """Something the user should know that did not stop the work (a cache entry rebuilt, a transition
    shortened). The CLI prints these on stderr as one ``warning:`` line each."""
