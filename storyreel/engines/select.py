"""Which engine renders a story: ``--engine`` / ``defaults.engine``, the model folder, and the hardware.

``auto`` picks ``ingredients`` when a complete model folder *and* a CUDA GPU are present, else
``preview``; :attr:`EngineChoice.reason` says why in one line. The model folder comes from
``--model DIR``, else the story's ``defaults.model``, else the ``STORYREEL_MODEL`` environment variable.
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


@dataclass(frozen=True)
class EngineChoice:
    """The engine to use, its model folder (ingredients only) and a one-line reason."""

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


def cuda_device_name() -> str | None:
    """Name of the first CUDA GPU, or None when torch sees none."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def choose_engine(
    requested: str,
    model_dir: Path | None,
    source: str = "",
    *,
    gpu_name: Callable[[], str | None] | None = None,
) -> EngineChoice:
    """Resolve ``auto`` and check that an explicit ``ingredients`` has a model folder.

    ``gpu_name()`` names the GPU the engine will run on, or None: this machine's (:func:`cuda_device_name`)
    by default, the cluster's for a Ray render."""
    gpu_name = gpu_name or cuda_device_name
    if requested not in ENGINES:
        raise StoryreelError(f"unknown engine {requested!r}", hint="use one of: " + ", ".join(ENGINES))
    where = f"{model_dir} (from {source})" if model_dir else ""
    if requested == "preview":
        return EngineChoice("preview", None, "preview engine requested")
    if requested == "ingredients":
        if model_dir is None:
            raise StoryreelError(
                "the ingredients engine needs a model folder",
                hint=f"pass --model DIR, set defaults.model in story.yaml or ${MODEL_ENV}; get the weights "
                "with `storyreel models download DIR`, or a tiny test model with `storyreel models tiny DIR`",
            )
        gpu = gpu_name()
        return EngineChoice("ingredients", model_dir, f"model {where} on {gpu or 'the CPU (slow)'}")
    if model_dir is None:
        return EngineChoice(
            "preview", None, f"no model folder given (--model, defaults.model or ${MODEL_ENV})"
        )
    if not model_dir.is_dir():
        return EngineChoice("preview", None, f"model folder {where} does not exist")
    from ingredients_model.checkpoint import missing_files  # imports torch: only when there is a model

    missing = missing_files(model_dir)
    if missing:
        return EngineChoice(
            "preview", None, f"model folder {where} is incomplete ({len(missing)} files missing; see doctor)"
        )
    gpu = gpu_name()
    if gpu is None:
        return EngineChoice("preview", None, f"model {where} found but no CUDA GPU")
    return EngineChoice("ingredients", model_dir, f"model {where} and GPU {gpu}")


def make_engine(choice: EngineChoice, *, device: str | None = None, memory: str = "auto") -> Engine:
    """Build (not load) the engine of ``choice``."""
    if choice.name == "preview":
        from storyreel.engines.preview import PreviewEngine

        return PreviewEngine()
    from ingredients_model.checkpoint import MEMORY_MODES
    from storyreel.engines.ingredients import IngredientsEngine

    if memory not in MEMORY_MODES:
        raise StoryreelError(f"unknown memory mode {memory!r}", hint="use one of: " + ", ".join(MEMORY_MODES))
    assert choice.model_dir is not None
    return IngredientsEngine(choice.model_dir, device=device, memory=memory)
