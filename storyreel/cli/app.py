"""The typer application object and the process-wide CLI state (``--debug``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console

from storyreel import __version__


@dataclass
class CliState:
    debug: bool = False


state = CliState()
console = Console()
console_err = Console(stderr=True)

app = typer.Typer(
    name="storyreel",
    help="Storyboards and batch videos with real, photographed people (Ingredients model).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"storyreel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    state.debug = debug
