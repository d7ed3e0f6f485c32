"""How long operations talk to the user: notices, details, warnings, errors and progress bars.

A :class:`Reporter` wraps one rich console (stderr in the CLI, so results on stdout stay clean) and a
verbosity: ``QUIET`` keeps only warnings and errors, ``VERBOSE`` adds details. The runner, reel assembly
and the CLI all report through one, so ``--quiet`` and ``--verbose`` mean the same everywhere.

Consoles made by :func:`make_console` never hard-wrap when they do not write to a terminal: piped output
and logs keep one line per line, whatever ``$COLUMNS`` says.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["NORMAL", "QUIET", "VERBOSE", "Reporter", "as_reporter", "make_console", "plural", "shown_path"]

QUIET, NORMAL, VERBOSE = -1, 0, 1
UNWRAPPED_WIDTH = 10_000  # columns of a console that does not write to a terminal: no hard wraps


class _Console(Console):
    """A rich console whose width is the terminal's (or ``$COLUMNS``), or unlimited when it does not
    write to a terminal; a width given in code wins."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kwargs.get("width") is None:
            self._width = None  # rich pins $COLUMNS here; decide on each use, knowing where we write

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(UNWRAPPED_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


def make_console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that wraps at the terminal's width and never when piped."""
    return _Console(stderr=stderr, highlight=False, emoji=False)  # ffmpeg's "0:v:0" is not an emoji


class Reporter:
    """Notices, details, warnings, errors and progress bars on one console, filtered by verbosity.

    ``console`` defaults to a stderr console from :func:`make_console`. Text is rich markup; callers
    escape user data with :func:`rich.markup.escape`.
    """

    def __init__(self, console: Console | None = None, verbosity: int = NORMAL):
        self.console = console if console is not None else make_console(stderr=True)
        self.verbosity = verbosity

    @property
    def quiet(self) -> bool:
        return self.verbosity <= QUIET

    @property
    def verbose(self) -> bool:
        return self.verbosity >= VERBOSE

    def notice(self, text: str) -> None:
        """What is happening (hidden by ``--quiet``)."""
        if not self.quiet:
            self.console.print(text, highlight=False)

    def detail(self, text: str) -> None:
        """More than most users want (shown with ``--verbose``)."""
        if self.verbose:
            self.console.print(f"[dim]{text}[/]", highlight=False)

    def warning(self, message: str) -> None:
        """Something the user should know; never hidden. ``message`` is plain text."""
        self.console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)

    def error(self, message: str, hint: str | None = None) -> None:
        """A failure and how to fix it; never hidden. Plain text."""
        self.console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        if hint:
            self.console.print(f"[yellow]hint:[/] {escape(hint)}", highlight=False)

    def progress(self, *, counts: bool = True) -> Progress:
        """A rich progress display on this console (only on a terminal, and not with ``--quiet``):
        description, bar, done/total (or percent when ``counts`` is False), elapsed time and ETA."""
        amount = MofNCompleteColumn() if counts else TaskProgressColumn()
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            amount,
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=self.quiet or not self.console.is_terminal,  # logs get the notices, not bars
        )

    def status(self, text: str) -> contextlib.AbstractContextManager[Any]:
        """A spinner with ``text`` while the ``with`` block runs; yields the rich ``Status``
        (``.update(text)``). Not on a terminal: ``text`` as a notice, and None. Nothing with ``--quiet``."""
        if self.quiet or not self.console.is_terminal:
            self.notice(text)
            return contextlib.nullcontext()
        return self.console.status(text)

    @contextlib.contextmanager
    def bar(
        self, description: str, total: float | None = None
    ) -> Iterator[Callable[[float, float | None], None]]:
        """One progress bar for the ``with`` block; yields ``update(completed, total=None)``."""
        with self.progress(counts=False) as progress:
            task = progress.add_task(description, total=total)

            def update(completed: float, new_total: float | None = None) -> None:
                if new_total is not None:
                    progress.update(task, total=new_total)
                progress.update(task, completed=completed)

            yield update


def as_reporter(target: Reporter | Console | None) -> Reporter:
    """``target`` as a reporter: itself, a reporter on that console, or a stderr reporter when None."""
    return target if isinstance(target, Reporter) else Reporter(target)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 story``, ``2 stories``: the count and the word in the right number."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def shown_path(path: Path | str) -> str:
    """``path`` as the user should read it: relative to the working directory when below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if relative.startswith("..") else relative
