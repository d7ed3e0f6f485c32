"""The CLI's output, in one place: results on stdout, everything else on stderr.

* :data:`console` prints **results** (tables, paths, the batch total) on stdout; with ``--json`` it
  moves to stderr and stdout carries exactly one JSON document (:func:`emit_json`).
* :data:`console_err` and :data:`reporter` print **notices, warnings, errors and progress** on stderr;
  ``--quiet`` hides notices and progress, ``--verbose`` adds details.
* Neither wraps lines when it does not write to a terminal (see :mod:`storyreel.reporting`).
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape
from rich.traceback import Traceback

from storyreel.reporting import NORMAL, VERBOSE, Reporter, make_console

__all__ = [
    "JSON_VERSION",
    "OutputState",
    "console",
    "console_err",
    "emit_json",
    "json_document",
    "reporter",
    "reset",
    "set_json",
    "set_verbosity",
    "state",
]

JSON_VERSION = 1  # bumped when a --json document changes incompatibly (fields may be added freely)

console = make_console()
console_err = make_console(stderr=True)
reporter = Reporter(console_err)


@dataclass
class OutputState:
    """How this invocation prints: ``--debug``, verbosity, ``--json`` and whether its document is out."""

    debug: bool = False
    verbosity: int = NORMAL
    json: bool = False
    json_emitted: bool = False
    command: str = ""
    warned: set[str] = field(default_factory=set)
    """Warnings already shown: each is said once per invocation, however often it is raised."""


state = OutputState()


class _ReporterHandler(logging.Handler):
    """Log records of the packages as the reporter's details (debug, info) or warnings; with
    ``--debug``, the traceback a record carries (e.g. of a story that failed in a batch)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            if state.debug:
                exc_type, exc, tb = record.exc_info
                console_err.print(Traceback.from_exception(exc_type, exc, tb))  # type: ignore[arg-type]
            return
        if record.levelno >= logging.WARNING:
            reporter.warning(record.getMessage())
        else:
            reporter.detail(escape(record.getMessage()))


_LOGGERS = ("storyreel", "ingredients_model")
_handler = _ReporterHandler()


def reset() -> None:
    """Back to the defaults (each invocation starts here, also several in one process in tests)."""
    state.__init__()  # type: ignore[misc]
    console.stderr = False
    set_verbosity(NORMAL)


def set_verbosity(verbosity: int) -> None:
    """``--quiet`` / ``--verbose``: the reporter's level, and the packages' log records with it."""
    state.verbosity = reporter.verbosity = verbosity
    _route_logs()


def set_debug() -> None:
    """``--debug``: tracebacks, also of the failures a batch records and goes on from."""
    state.debug = True
    _route_logs()


def _route_logs() -> None:
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _handler not in logger.handlers:
            logger.addHandler(_handler)
        wanted = state.verbosity >= VERBOSE or state.debug
        logger.setLevel(logging.DEBUG if wanted else logging.WARNING)


def set_json(command: str) -> None:
    """``--json``: results move to stderr; stdout is kept for the one JSON document."""
    state.json, state.command = True, command
    console.stderr = True


def json_document(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` under the versioned schema name, e.g. ``{"schema": "storyreel.render/1", ...}``."""
    return {"schema": f"storyreel.{kind}/{JSON_VERSION}", **payload}


def emit_json(kind: str, payload: dict[str, Any]) -> None:
    """Write the invocation's one JSON document to stdout (UTF-8, indented, a trailing newline)."""
    text = json.dumps(json_document(kind, payload), indent=2, ensure_ascii=False, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    state.json_emitted = True


def show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """``warnings.showwarning`` for the CLI: one ``warning:`` line on stderr, no source line, each text
    once per invocation (e.g. a photo's face warning from the render and again from the review page)."""
    text = str(message)
    if text not in state.warned:
        state.warned.add(text)
        reporter.warning(text)


def route_warnings() -> None:
    """Print every Python warning that reaches the top as a plain ``warning:`` line on stderr."""
    warnings.showwarning = show_warning
