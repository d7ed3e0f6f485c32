"""The engine protocol: describe yourself (no weights), ``load()`` once, then ``render()`` job after job."""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from storyreel.plan import RenderJob
    from storyreel.project import Project
    from storyreel.story import Story

StepProgress = Callable[[int, int], None]
"""``progress(done, total)``: called as denoising steps (or frames) complete."""


@dataclass(frozen=True)
class EngineSpec:
    """What the planner needs to know about an engine without loading any weights.

    ``fps``/``width``/``height`` None mean "the story's reel fps / size". Frame counts are clipped to
    ``max_frames`` and, when ``frame_multiple`` > 1, rounded to ``k * frame_multiple + 1`` (CogVideoX's
    temporal compression). ``uses_caption``: the engine draws the shot caption (unless the reel burns it
    in); ``generative``: a diffusion model, so negative prompts, steps, guidance, router mode and cache
    threshold matter.
    """

    name: str
    version: str
    fps: int | None = None
    width: int | None = None
    height: int | None = None
    max_frames: int | None = None
    frame_multiple: int = 1
    model_revision: str | None = None
    uses_caption: bool = False
    generative: bool = False
    min_cast: int = 0


@dataclass
class RenderResult:
    """One rendered clip: what was written, how long it took, and the peak memory it needed."""

    frames: int
    fps: float
    width: int
    height: int
    seconds: float
    peak_memory_bytes: int | None
    peak_memory_kind: str
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """A renderer of :class:`~storyreel.plan.RenderJob` s. Models are loaded once, never per shot."""

    name: str

    def spec(self) -> EngineSpec:
        """Frame rate, size, limits and model revision, from configs only (cheap)."""
        ...

    def versions(self) -> dict[str, str]:
        """Library and model versions recorded in each clip's JSON."""
        ...

    def load(self) -> None:
        """Load models (idempotent); called once, before the first render."""
        ...

    def render(
        self, job: RenderJob, output: Path, progress: StepProgress, *, story: Story, project: Project
    ) -> RenderResult:
        """Render ``job`` to the mp4 ``output`` (a ``.partial`` path the runner renames on success)."""
        ...


def rss_peak_bytes() -> int:
    """Peak resident memory of this process so far (``getrusage``; kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
