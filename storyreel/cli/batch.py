"""Running a command over several stories: each gets a status, a failure names its story, and the
command exits 1 when any failed (``validate``, ``plan``, ``eval`` and ``reel``; ``render`` has the
runner's own batch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import typer
from rich.markup import escape

from storyreel.cli.console import console, reporter, state
from storyreel.errors import HintedError, StoryreelError
from storyreel.reporting import plural, shown_path
from storyreel.runner import FAILED, NOT_RUN, OK, Failure

__all__ = ["AlreadyReported", "StoryOutcome", "each_story", "exit_for", "failure_json", "print_story_count"]

T = TypeVar("T")


class AlreadyReported(StoryreelError):
    """A story's failure that the command has already shown in full: recorded, not printed again."""


@dataclass
class StoryOutcome(Generic[T]):
    """One story of a batch: its status (``ok``, ``failed``, ``not_run``) and result or failure."""

    path: Path
    status: str
    value: T | None = None
    failure: Failure | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields every per-story JSON entry starts with."""
        return {"story": str(self.path.absolute()), "status": self.status, **failure_json(self.failure)}


def failure_json(failure: Failure | None) -> dict[str, Any]:
    if failure is None:
        return {"error": None}
    return {"error": {"message": failure.message, "hint": failure.hint}}


def each_story(
    paths: Sequence[Path], action: Callable[[Path], T], *, keep_going: bool = True
) -> list[StoryOutcome[T]]:
    """``action(path)`` for each story; a user error is reported naming the story, and then the batch
    goes on (``keep_going``) or the rest is ``not_run``."""
    outcomes: list[StoryOutcome[T]] = []
    stopped = False
    for path in paths:
        if stopped:
            outcomes.append(StoryOutcome(path, NOT_RUN))
            continue
        try:
            outcomes.append(StoryOutcome(path, OK, value=action(path)))
        except HintedError as err:
            if state.debug:
                raise
            failure = Failure.from_error(err)
            if not isinstance(err, AlreadyReported):
                reporter.error(failure.describe(shown_path(path)), failure.hint)
            outcomes.append(StoryOutcome(path, FAILED, failure=failure))
            stopped = not keep_going
    return outcomes


def print_story_count(outcomes: Sequence[StoryOutcome[Any]]) -> None:
    """With several stories, a last line counting them by status."""
    if len(outcomes) < 2:
        return
    counts = {status: sum(o.status == status for o in outcomes) for status in (OK, FAILED, NOT_RUN)}
    parts = [f"{n} {status.replace('_', ' ')}" for status, n in counts.items() if n]
    colour = "red" if counts[FAILED] else "green"
    stories = plural(len(outcomes), "story", "stories")
    console.print(f"[{colour}]{stories}[/]: " + escape(", ".join(parts)), highlight=False)


def exit_for(outcomes: Sequence[StoryOutcome[Any]]) -> None:
    """Exit 1 when any story did not succeed."""
    if any(o.status != OK for o in outcomes):
        raise typer.Exit(1)
