"""The typer application and the conventions every command shares.

Every command and command group is built from :class:`StoryreelTyper`, so each of them, at any level:

* takes ``-h`` as ``--help``;
* accepts ``--quiet/-q``, ``--verbose/-v`` and ``--debug`` before or after the subcommand
  (``storyreel -q render`` and ``storyreel render -q`` are the same);
* shows boolean flags without a ``<bool>`` type.

Shell completion is on (``--install-completion``, ``--show-completion``). The CLI's output streams
live in :mod:`storyreel.cli.console`; ``console``, ``console_err`` and ``state`` are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

import storyreel.cli.console as output
from storyreel import __version__
from storyreel.cli.console import console, console_err, reporter, state
from storyreel.environment import environment_help
from storyreel.reporting import NORMAL, QUIET, VERBOSE

__all__ = ["StoryreelTyper", "app", "console", "console_err", "reporter", "state"]

HELP_OPTION_NAMES = ["-h", "--help"]


def _verbosity(level: int, flag: str, other: str) -> Callable[[typer.Context, Any, bool], None]:
    def callback(ctx: typer.Context, param: Any, value: bool) -> None:
        if not value:
            return
        if state.verbosity not in (NORMAL, level):
            raise typer.BadParameter(f"{flag} cannot be combined with {other}")
        output.set_verbosity(level)

    return callback


def _debug(ctx: typer.Context, param: Any, value: bool) -> None:
    if value:
        output.set_debug()


def _shared_options(
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="Only results, warnings and errors: no notices, no progress bars.",
            callback=_verbosity(QUIET, "--quiet", "--verbose"),
            expose_value=False,
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Also print details (e.g. every ffmpeg command line).",
            callback=_verbosity(VERBOSE, "--verbose", "--quiet"),
            expose_value=False,
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show full tracebacks on errors.", callback=_debug, expose_value=False),
    ] = False,
) -> None:
    """The options every command and group accepts (their parameters are copied from here)."""


def shared_params() -> list[Any]:
    """Fresh click parameters for ``--quiet``, ``--verbose`` and ``--debug``."""
    holder = typer.Typer()
    holder.command()(_shared_options)
    return list(typer.main.get_command(holder).params)


def _no_bool_type(params: Sequence[Any]) -> None:
    """Flags take no value: show them without typer's ``<bool>`` type."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class StoryreelCommand(TyperCommand):
    """A command with the shared options and the help conventions (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(shared_params())

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _no_bool_type(params)
        return params


class StoryreelGroup(TyperGroup):
    """A command group with the shared options; the root one starts each invocation from clean state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(shared_params())

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _no_bool_type(params)
        return params

    def main(self, *args: Any, **kwargs: Any) -> Any:
        output.reset()
        return super().main(*args, **kwargs)


class StoryreelTyper(typer.Typer):
    """``typer.Typer`` whose commands and groups follow storyreel's conventions."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", StoryreelGroup)
        kwargs.setdefault("context_settings", {"help_option_names": HELP_OPTION_NAMES})
        kwargs.setdefault("pretty_exceptions_enable", False)
        kwargs.setdefault("add_completion", False)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any):
        return super().command(name, cls=cls or StoryreelCommand, **kwargs)


app = StoryreelTyper(
    name="storyreel",
    help="Storyboards and batch videos with real, photographed people (Ingredients model).",
    epilog=environment_help(),
    no_args_is_help=True,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"storyreel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    pass
