"""Engines turn a :class:`~storyreel.plan.RenderJob` into a clip; ``auto`` picks one per story."""

from __future__ import annotations

from typing import Literal, get_args

EngineName = Literal["auto", "ingredients", "preview"]
"""What ``defaults.engine`` and ``--engine`` accept (``auto``: see :mod:`storyreel.engines.select`)."""
ENGINES: tuple[str, ...] = get_args(EngineName)
