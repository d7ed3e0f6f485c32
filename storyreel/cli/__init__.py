"""The `storyreel` command line: a thin typer layer over the storyreel package.

Each command group lives in its own module and registers itself on :data:`app`.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from storyreel.cli import (  # noqa: F401  (imported for their @app.command registrations)
    cast_commands,
    eval_commands,
    models_commands,
    reel_commands,
    render_commands,
    story_commands,
)
from storyreel.cli.app import app, console_err, state
from storyreel.errors import HintedError, user_hint

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `storyreel` console script."""
    try:
        app(args=argv, prog_name="storyreel")
    except HintedError as err:  # storyreel's and the model package's errors
        if state.debug:
            raise
        location = getattr(err, "location", None)
        prefix = f"{location}: " if location else ""
        console_err.print(f"[bold red]error:[/] {escape(prefix + err.message)}", highlight=False)
        if hint := user_hint(err):
            console_err.print(f"[yellow]hint:[/] {escape(hint)}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        if state.debug:
            raise
        console_err.print("[bold red]interrupted[/]")
        sys.exit(130)
    except Exception as err:  # a bug, not the user's fault: say so briefly
        if state.debug:
            raise
        detail = escape(f"{type(err).__name__}: {err}")
        console_err.print(f"[bold red]internal error:[/] {detail}", highlight=False)
        console_err.print("[yellow]hint:[/] rerun with --debug for the traceback and report it.")
        sys.exit(2)
