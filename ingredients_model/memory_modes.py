"""The memory modes of :func:`ingredients_model.checkpoint.load_pipeline` (importable without torch, so
an application can check a choice before loading anything).

``none``: everything on the device; ``model_offload``: one component on the GPU at a time;
``group_offload``: one transformer block at a time; ``auto``: chosen from the free GPU memory.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["MEMORY_MODES", "MemoryMode"]

MemoryMode = Literal["auto", "none", "model_offload", "group_offload"]
MEMORY_MODES: tuple[str, ...] = get_args(MemoryMode)
