"""The engine protocol: describe yourself (no weights), ``load()`` once, then ``render()`` job after job."""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from storyreel.plan import EngineSpec, RenderJob

if TYPE_CHECKING:
    import torch

    from storyreel.project import Project

__all__ = ["Engine", "RenderResult", "StepProgress", "peak_memory", "rss_peak_bytes"]

StepProgress = Callable[[int, int], None]
"""``progress(done, total)``: called as denoising steps (or frames) complete."""


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
    """A renderer of :class:`~storyreel.plan.RenderJob` s. Models are loaded once, never per shot.

    An engine reads the files named in the job (``job.photos`` and the ``cast add`` records next to them,
    the cache folders of ``job.cast_caches``) and its caches under ``project``; nothing else.
    Engines with caches may also define ``prepare(work: Iterable[tuple[RenderJob, Project]])`` (fill the
    caches for a whole batch up front) and ``cache_files(job, project) -> list[Path]`` (the cache files
    rendering ``job`` reads), which a Ray render uses to compute each cache entry once per cluster and
    ship it to the workers.
    """

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
        self, job: RenderJob, output: Path, progress: StepProgress, *, project: Project
    ) -> RenderResult:
        """Render ``job`` to the mp4 ``output`` (a ``.partial`` path the runner renames on success).

        Everything about the shot comes from ``job``; ``project`` only gives the cache folders."""
        ...


def rss_peak_bytes() -> int:
    """Peak resident memory of this process so far (``getrusage``; kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def peak_memory(device: torch.device | None) -> tuple[int, str]:
    """This render's peak memory and what it measures: CUDA's allocator peak on a CUDA ``device``, else
    the process's peak resident memory."""
    if device is not None and device.type == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    return rss_peak_bytes(), "rss"
