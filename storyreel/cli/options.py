"""Arguments and options shared by several commands, each defined once with typer ``Annotated``.

A command declares ``model: ModelOption = None``; the flag, its help text and its checks come from here,
so ``--model`` reads the same in every command (the style of the ``hf`` CLI). Defaults that belong to the
library (the lock wait, the attempts of a Ray render) are imported from it, never repeated. Options with a
fixed set of values are typed with the library's ``Literal`` (e.g. :data:`~storyreel.engines.EngineName`),
so a wrong value is refused before any work starts, whatever the engine.
:func:`expand_stories` turns a :data:`StoriesArgument` into story paths, the same way for every command
that takes several stories.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Annotated, Any

import typer

import storyreel.cli.console as output
from ingredients_model.memory_modes import MemoryMode
from storyreel.engines import EngineName
from storyreel.errors import StoryreelError
from storyreel.plan import Overrides
from storyreel.step_cache import parse_cache_option

__all__ = [
    "CacheOption",
    "CacheThresholdOption",
    "CastLibraryOption",
    "CastNameArgument",
    "CfgRoutingOption",
    "EngineOption",
    "JsonOption",
    "KeepGoingOption",
    "MemoryOption",
    "ModelOption",
    "ProjectOption",
    "SetOption",
    "StoriesArgument",
    "StoryArgument",
    "WanModelOption",
    "expand_stories",
    "keep_going_for",
    "shot_overrides",
]

StoryArgument = Annotated[
    Path, typer.Argument(help="A story.yaml, or a project folder containing one.", show_default=False)
]
StoriesArgument = Annotated[
    list[str] | None,
    typer.Argument(
        help="Story files or project folders, or globs like 'stories/*/story.yaml' (default: ./story.yaml).",
        show_default=False,
        metavar="STORIES",
    ),
]
EngineOption = Annotated[
    EngineName | None,
    typer.Option(
        "--engine",
        help="The engine for every shot (default: each shot's engine:, else the story's defaults.engine).",
        show_default=False,
    ),
]
MemoryOption = Annotated[
    MemoryMode,
    typer.Option("--memory", help="Where the model's weights live while rendering (model engines)."),
]
ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model", "-m", help="Model folder (default: the story's defaults.model, else $STORYREEL_MODEL)."
    ),
]
WanModelOption = Annotated[
    Path | None,
    typer.Option(
        "--wan-model",
        help="Wan VACE model folder (default: the story's defaults.wan_model, else $STORYREEL_WAN_MODEL).",
    ),
]
CacheOption = Annotated[
    str | None,
    typer.Option(
        "--cache",
        help="Step cache for every shot, written as in story.yaml: none, taylorseer, "
        "'{kind: first_block, threshold: 0.05}', '{kind: taylorseer, cache_interval: 5}', "
        "'{kind: mag, threshold: 0.06, mag_ratios: [...]}' (default: the story's `cache`).",
        show_default=False,
    ),
]
CacheThresholdOption = Annotated[
    float | None,
    typer.Option(
        "--cache-threshold",
        min=0.0,
        help="Short for --cache '{kind: first_block, threshold: X}' (e.g. 0.05).",
    ),
]
CfgRoutingOption = Annotated[
    str | None,
    typer.Option(
        "--cfg-routing",
        help="Faces under guidance for every shot: released (from the unconditional half, as the released "
        "code) or per_branch (default: the story's `cfg_routing`, else released).",
        show_default=False,
    ),
]
CastLibraryOption = Annotated[
    Path | None,
    typer.Option(
        "--cast-library",
        help="Cast library folder, may be outside the project (default: the story's cast_library, "
        "else $STORYREEL_CAST).",
        show_default=False,
    ),
]
ProjectOption = Annotated[Path, typer.Option("--project", "-p", help="Project folder (or its story.yaml).")]
CastNameArgument = Annotated[str, typer.Argument(help="Cast name.", show_default=False)]
KeepGoingOption = Annotated[
    bool | None,
    typer.Option(
        "--keep-going/--fail-fast",
        help="After a failing story or shot, go on with the rest (default with several stories) or stop "
        "(default with one).",
        show_default=False,
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Set a story variable: --set product=shoes (repeat for more; repeating one name with other "
        "values makes one variant per value).",
        metavar="NAME=VALUE",
    ),
]


def _json_mode(ctx: typer.Context, param: Any, value: bool) -> bool:
    if value:
        output.set_json(".".join(ctx.command_path.split()[1:]))
    return value


JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON document on stdout (its 'schema' names it); human text goes to stderr.",
        callback=_json_mode,
    ),
]

_GLOB_CHARS = set("*?[")


def expand_stories(patterns: list[str] | None) -> list[Path]:
    """Story files / project folders from the arguments; glob patterns (quoted or not) are expanded.

    No argument means ``story.yaml`` in the working directory. A pattern that matches nothing is an error.
    """
    if not patterns:
        return [Path("story.yaml")]
    paths: list[Path] = []
    for pattern in patterns:
        if _GLOB_CHARS & set(pattern) and not Path(pattern).exists():
            matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
            if not matches:
                raise StoryreelError(
                    f"no story matches {pattern!r}", hint="check the pattern, e.g. 'stories/*/story.yaml'"
                )
            paths += [Path(m) for m in matches]
        else:
            paths.append(Path(pattern))
    return paths


def keep_going_for(choice: bool | None, stories: list[Path], variants: int = 1) -> bool:
    """``--keep-going``/``--fail-fast`` as given, else keep going exactly when there are several stories
    (or ``variants`` of each, from ``--set``)."""
    return choice if choice is not None else len(stories) * variants > 1


def variables(values: list[str] | None) -> dict[str, list[str]]:
    """``--set`` values by name (a bad item is a usage error naming it)."""
    from storyreel.story import parse_assignments

    try:
        return parse_assignments(values)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--set") from None


def single_variant(values: list[str] | None) -> dict[str, str]:
    """``--set`` values for commands that look at one variant at a time."""
    assigned = variables(values)
    repeated = [name for name, items in assigned.items() if len(items) > 1]
    if repeated:
        raise typer.BadParameter(
            f"{', '.join(repeated)} given several values; this command takes one variant", param_hint="--set"
        )
    return {name: items[0] for name, items in assigned.items()}


def shot_overrides(cfg_routing: str | None, cache: str | None, cache_threshold: float | None) -> Overrides:
    """The settings ``--cfg-routing``, ``--cache TEXT`` and ``--cache-threshold`` give every shot, checked."""
    return Overrides.given(
        cfg_routing, parse_cache_option(cache) if cache is not None else None, cache_threshold
    )
