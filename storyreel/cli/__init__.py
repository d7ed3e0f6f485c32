"""The `storyreel` command line: a thin typer layer over the storyreel package.

Each command group lives in its own module and registers itself on :data:`app`. Exit codes:

==== ===========================================================================
0    success
1    a user error (bad story, missing file, ...), or some story of a batch failed
2    usage error (unknown option, bad value): click's own
70   internal error: a bug in storyreel (EX_SOFTWARE); rerun with --debug and report it
130  interrupted (Ctrl-C or SIGTERM)
==== ===========================================================================
"""

from __future__ import annotations

import sys

from rich.markup import escape

from storyreel.cli import (  # noqa: F401  (imported for their @app.command registrations)
    campaign_commands,
    cast_commands,
    eval_commands,
    models_commands,
    reel_commands,
    render_commands,
    story_commands,
)
from storyreel.cli.app import app, console_err, state
from storyreel.cli.console import emit_json, route_warnings
from storyreel.errors import HintedError, user_hint
from storyreel.fsutil import disk_full_error, is_disk_full

__all__ = ["EXIT_FAILED", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "app", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 70, 130


def _error_document(kind: str, message: str, hint: str | None, location: object, code: int) -> None:
    """Under ``--json``, a command that failed before writing its document writes this one instead."""
    if state.json and not state.json_emitted:
        error = {"message": message, "hint": hint, "location": str(location) if location else None}
        emit_json("error", {"command": state.command, "ok": False, "kind": kind, "error": error,
                            "exit_code": code})  # fmt: skip


def _user_error(err: HintedError) -> None:
    location = getattr(err, "location", None)
    prefix = f"{location}: " if location else ""
    console_err.print(f"[bold red]error:[/] {escape(prefix + err.message)}", highlight=False)
    hint = user_hint(err)
    if hint:
        console_err.print(f"[yellow]hint:[/] {escape(hint)}", highlight=False)
    _error_document("user", err.message, hint, location, EXIT_FAILED)
    sys.exit(EXIT_FAILED)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `storyreel` console script."""
    route_warnings()
    try:
        app(args=argv, prog_name="storyreel")
    except HintedError as err:  # storyreel's and the model package's errors
        if state.debug:
            raise
        _user_error(err)
    except KeyboardInterrupt:
        if state.debug:
            raise
        console_err.print("[bold red]interrupted[/]")
        _error_document("interrupted", "interrupted", None, None, EXIT_INTERRUPTED)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as err:  # a bug, not the user's fault: say so briefly
        if state.debug:
            raise
        if is_disk_full(err):  # wherever it happened, a full disk is the user's to fix
            _user_error(disk_full_error(getattr(err, "filename", None) or "a file"))
        detail = f"{type(err).__name__}: {err}"
        console_err.print(f"[bold red]internal error:[/] {escape(detail)}", highlight=False)
        hint = "rerun with --debug for the traceback and report it."
        console_err.print(f"[yellow]hint:[/] {hint}", highlight=False)
        _error_document("internal", detail, hint, None, EXIT_INTERNAL)
        sys.exit(EXIT_INTERNAL)
