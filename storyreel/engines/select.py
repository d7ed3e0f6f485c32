"""Which engine renders a shot: ``--engine`` / ``engine:`` / ``defaults.engine``, model folders, hardware.

``auto`` picks ``ingredients`` when its complete model folder *and* a CUDA GPU are present, else
``wan-vace`` on the same terms, else ``preview``; :attr:`EngineChoice.reason` says why in one line. The
Ingredients folder comes from ``--model DIR``, else the story's ``defaults.model``, else ``$STORYREEL_MODEL``;
the Wan VACE folder from ``--wan-model DIR``, else ``defaults.wan_model``, else ``$STORYREEL_WAN_MODEL``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from storyreel.engines import ENGINES
from storyreel.errors import StoryreelError

if TYPE_CHECKING:
    from storyreel.engines.base import Engine
    from storyreel.story import Story

MODEL_ENV = "STORYREEL_MODEL"
WAN_MODEL_ENV = "STORYREEL_WAN_MODEL"


@dataclass(frozen=True)
class EngineChoice:
    """The engine to use, its model folder (None for the preview) and a one-line reason."""

    name: str
    model_dir: Path | None
    reason: str


def resolve_model_dir(option: Path | None, story: Story | None) -> tuple[Path | None, str]:
    """The model folder and where it came from: ``--model``, ``defaults.model`` or ``$STORYREEL_MODEL``."""
    if option is not None:
        return Path(option).expanduser().absolute(), "--model"
    if story is not None and story.defaults.model:
        return Path(story.defaults.model), "defaults.model"
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env).expanduser().absolute(), f"${MODEL_ENV}"
    return None, ""


def resolve_wan_model_dir(option: Path | None, story: Story | None) -> tuple[Path | None, str]:
    """The Wan VACE folder and where it came from: ``--wan-model``, ``defaults.wan_model`` or
    ``$STORYREEL_WAN_MODEL``."""
    if option is not None:
        return Path(option).expanduser().absolute(), "--wan-model"
    if story is not None and story.defaults.wan_model:
        return Path(story.defaults.wan_model), "defaults.wan_model"
    env = os.environ.get(WAN_MODEL_ENV)
    if env:
        return Path(env).expanduser().absolute(), f"${WAN_MODEL_ENV}"
    return None, ""


def cuda_device_name() -> str | None:
    """Name of the first CUDA GPU, or None when torch sees none."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


_SOURCES = {  # engine -> where its model folder comes from, and the `models download`/`models tiny` words
    "ingredients": ("--model", "defaults.model", MODEL_ENV, "", ""),
    "wan-vace": ("--wan-model", "defaults.wan_model", WAN_MODEL_ENV, "wan-vace-1.3b ", " --engine wan-vace"),
}


def _unusable(engine: str, model_dir: Path | None, where: str) -> str | None:
    """Why ``auto`` cannot use ``engine`` with ``model_dir`` (None: it can, given a GPU)."""
    if model_dir is None:
        option, field, env = _SOURCES[engine][:3]
        return f"no model folder given ({option}, {field} or ${env})"
    if not model_dir.is_dir():
        return f"{engine} model folder {where} does not exist"
    if engine == "ingredients":
        from ingredients_model.checkpoint import missing_files  # imports torch: only when there is a model
    else:
        from storyreel.models.wan_vace import missing_files
    missing = missing_files(model_dir)
    if missing:
        return f"{engine} model folder {where} is incomplete ({len(missing)} files missing; see doctor)"
    if engine == "ingredients":
        from ingredients_model.folder_checks import damaged_files

        damaged = damaged_files(model_dir)
        if damaged:
            return f"{engine} model folder {where} has {len(damaged)} damaged file(s) (see doctor)"
    return None


def choose_engine(
    requested: str,
    model_dir: Path | None,
    source: str = "",
    *,
    wan_model_dir: Path | None = None,
    wan_source: str = "",
    gpu_name: Callable[[], str | None] | None = None,
) -> EngineChoice:
    """Resolve ``auto`` and check that an explicit ``ingredients`` or ``wan-vace`` has a model folder.

    ``gpu_name()`` names the GPU the engine will run on, or None: this machine's (:func:`cuda_device_name`)
    by default, the cluster's for a Ray render."""
    gpu_name = gpu_name or cuda_device_name
    if requested not in ENGINES:
        raise StoryreelError(f"unknown engine {requested!r}", hint="use one of: " + ", ".join(ENGINES))
    if requested == "preview":
        return EngineChoice("preview", None, "preview engine requested")
    folders = {"ingredients": (model_dir, source), "wan-vace": (wan_model_dir, wan_source)}
    where = {
        name: f"{folder} (from {origin})" if folder else "" for name, (folder, origin) in folders.items()
    }
    if requested != "auto":
        folder = folders[requested][0]
        if folder is None:
            option, field, env, name, tiny = _SOURCES[requested]
            raise StoryreelError(
                f"the {requested} engine needs a model folder",
                hint=f"pass {option} DIR, set {field} in story.yaml or ${env}; get the weights with "
                f"`storyreel models download {name}DIR`, or a tiny test model with `storyreel models tiny "
                f"DIR{tiny}`",
            )
        gpu = gpu_name()
        return EngineChoice(requested, folder, f"model {where[requested]} on {gpu or 'the CPU (slow)'}")
    reasons = []
    for engine, (folder, _) in folders.items():
        reason = _unusable(engine, folder, where[engine])
        if reason is None:
            gpu = gpu_name()
            if gpu is not None:
                return EngineChoice(engine, folder, f"model {where[engine]} and GPU {gpu}")
            reason = f"{engine} model {where[engine]} found but no CUDA GPU"
        if folder is not None or engine == "ingredients":  # an unset Wan folder is not worth a mention
            reasons.append(reason)
    return EngineChoice("preview", None, "; ".join(reasons))


def choose_shot_engines(
    story: Story,
    engine: str | None = None,
    model: Path | None = None,
    wan_model: Path | None = None,
    *,
    gpu_name: Callable[[], str | None] | None = None,
) -> dict[str, EngineChoice]:
    """The engine of every shot, by shot id: ``engine`` (``--engine``) for all shots when given, else the
    shot's ``engine:``, else ``defaults.engine``; each requested name (``auto`` included) resolved once."""
    model_dir, source = resolve_model_dir(model, story)
    wan_dir, wan_source = resolve_wan_model_dir(wan_model, story)
    requested = {shot.id: engine or shot.engine or story.defaults.engine for shot in story.shots}
    choices = {
        name: choose_engine(
            name, model_dir, source, wan_model_dir=wan_dir, wan_source=wan_source, gpu_name=gpu_name
        )
        for name in dict.fromkeys(requested.values())
    }
    return {shot_id: choices[name] for shot_id, name in requested.items()}


def make_engine(
    choice: EngineChoice, *, device: str | None = None, memory: str = "auto", context_parallel: bool = False
) -> Engine:
    """Build (not load) the engine of ``choice`` (``context_parallel``: see
    :class:`~storyreel.engines.ingredients.IngredientsEngine`)."""
    if choice.name == "preview":
        from storyreel.engines.preview import PreviewEngine

        return PreviewEngine()
    from ingredients_model.memory_modes import MEMORY_MODES

    if memory not in MEMORY_MODES:
        raise StoryreelError(f"unknown memory mode {memory!r}", hint="use one of: " + ", ".join(MEMORY_MODES))
    assert choice.model_dir is not None
    if choice.name == "wan-vace":
        from storyreel.engines.wan_vace import WanVaceEngine

        if context_parallel:
            raise StoryreelError(
                "one shot over several GPUs (--parallel shot) works with the ingredients engine only",
                hint="render wan-vace shots with --parallel shots",
            )
        return WanVaceEngine(choice.model_dir, device=device, memory=memory)
    from storyreel.engines.ingredients import IngredientsEngine

    return IngredientsEngine(
        choice.model_dir, device=device, memory=memory, context_parallel=context_parallel
    )
