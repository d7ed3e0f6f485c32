"""Render engines: one protocol (:mod:`.base`), the full Ingredients model, Wan2.1-VACE, a CPU preview;
each turns a :class:`~storyreel.plan.RenderJob` into a clip, and :mod:`.select` picks each shot's engine."""

from __future__ import annotations

from typing import Literal, get_args

EngineName = Literal["auto", "ingredients", "wan-vace", "preview"]
"""What ``defaults.engine`` and ``--engine`` accept (``auto``: see :mod:`storyreel.engines.select`)."""
ENGINES: tuple[str, ...] = get_args(EngineName)
