"""Arguments and options shared by several commands, each defined once with typer ``Annotated``.

A command declares ``model: ModelOption = None``; the flag, its help text and its checks come from here,
so ``--model`` reads the same in every command (the style of the ``hf`` CLI). Defaults that belong to the
library (the lock wait, the attempts of a Ray render) are imported from it, never repeated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "CacheThresholdOption",
    "CastNameArgument",
    "EngineOption",
    "ModelOption",
    "ProjectOption",
    "StoryArgument",
]

StoryArgument = Annotated[
    Path, typer.Argument(help="A story.yaml, or a project folder containing one.", show_default=False)
]
EngineOption = Annotated[
    str | None,
    typer.Option("--engine", help="auto | ingredients | preview (default: the story's defaults.engine)."),
]
ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model", "-m", help="Model folder (default: the story's defaults.model, else $STORYREEL_MODEL)."
    ),
]
CacheThresholdOption = Annotated[
    float | None,
    typer.Option(
        "--cache-threshold", min=0.0, help="First-block cache threshold (e.g. 0.05; off by default)."
    ),
]
ProjectOption = Annotated[Path, typer.Option("--project", "-p", help="Project folder (or its story.yaml).")]
CastNameArgument = Annotated[str, typer.Argument(help="Cast name.", show_default=False)]
