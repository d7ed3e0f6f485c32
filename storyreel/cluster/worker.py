"""The Ray worker: an actor that loads each engine once and renders shot after shot.

The driver wraps :class:`ShotWorker` with ``ray.remote`` (one per GPU, or per ``cpus_per_worker`` CPUs).
A shot's files arrive through the object store and are staged in a private folder (:class:`Stage`);
the clip is rendered there and its bytes go back to the driver, which writes it into the project.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from storyreel.cluster.files import Files, Stage
from storyreel.engines.base import Engine, RenderResult
from storyreel.engines.select import EngineChoice, make_engine
from storyreel.errors import HintedError, StoryreelError
from storyreel.fsutil import PARTIAL_SUFFIX
from storyreel.plan import EngineSpec, RenderJob

__all__ = ["ShotOutput", "ShotWorker"]


@dataclass
class ShotOutput:
    """A rendered shot as it travels back: the clip's bytes, what its record needs, and the seconds the
    worker spent on it (staging its files included)."""

    clip: bytes
    result: RenderResult
    engine: str
    versions: dict[str, str]
    started: float
    where: dict[str, Any]
    seconds: float


class ShotWorker:
    """One worker of a Ray render (see the module docstring); ``index`` names it in clip records."""

    def __init__(self, index: int, memory: str = "auto"):
        self.index = index
        self.memory = memory
        self.engines: dict[tuple[str, str], Engine] = {}
        self.stage = Stage()

    def where(self) -> dict[str, Any]:
        """Host, pid and worker index, as recorded next to each clip this worker renders."""
        return {"host": socket.gethostname(), "pid": os.getpid(), "ray_worker": self.index}

    def engine(self, choice: EngineChoice, spec: EngineSpec) -> Engine:
        """The loaded engine of ``choice``; refuses when it differs from the driver's (other model
        weights or storyreel version), since its clips would not match their job keys."""
        key = (choice.name, str(choice.model_dir))
        if key not in self.engines:
            engine = make_engine(choice, memory=self.memory)
            found = engine.spec()
            if found != spec:
                raise StoryreelError(
                    f"the {choice.name} engine on {socket.gethostname()} differs from the driver's "
                    f"(version {found.version} vs {spec.version}, model revision "
                    f"{found.model_revision} vs {spec.model_revision})",
                    hint="install the same storyreel version on every machine, and the same model folder "
                    f"at {choice.model_dir}",
                )
            engine.load()
            self.engines[key] = engine
        return self.engines[key]

    def load(self, engines: list[tuple[EngineChoice, EngineSpec]]) -> dict[str, Any]:
        """Load the batch's engines now, before the first shot arrives; returns :meth:`where`."""
        for choice, spec in engines:
            self.engine(choice, spec)
        return self.where()

    def cache_files(self, choice: EngineChoice, spec: EngineSpec, jobs: list[tuple[str, RenderJob]]) -> list:
        """For each (project location, job): the staged names of the cache files rendering it reads
        (``cache/…`` or ``cast-caches/…``: :meth:`Stage.name`; none for engines without caches)."""
        engine = self.engine(choice, spec)
        method = getattr(engine, "cache_files", None)
        found = []
        for location, job in jobs:
            project = self.stage.project(location)
            paths = method(self.stage.job(job), project) if method is not None else []
            found.append([self.stage.name(path, project) for path in paths])
        return found

    def prepare(
        self,
        choice: EngineChoice,
        spec: EngineSpec,
        jobs: list[tuple[str, RenderJob]],
        files: Files,
        wanted: list[str],
    ) -> dict[str, bytes]:
        """Fill the caches for ``jobs`` (the engine's ``prepare``: each entry computed once) and return
        the bytes of the ``wanted`` staged files that now exist."""
        engine = self.engine(choice, spec)
        self.stage.receive(files)
        prepare = getattr(engine, "prepare", None)
        if prepare is not None:
            prepare([(self.stage.job(job), self.stage.project(location)) for location, job in jobs])
        return self.stage.read(wanted)

    def render(
        self, choice: EngineChoice, spec: EngineSpec, location: str, job: RenderJob, files: Files
    ) -> ShotOutput:
        """Render one travelling job; its files are staged first (each file once per worker)."""
        began = time.perf_counter()
        engine = self.engine(choice, spec)
        if job.compute_key() != job.key:
            raise StoryreelError(f"shot {job.shot_id}: the job changed on its way to {socket.gethostname()}")
        self.stage.receive(files)
        output = self.stage.path(f"clips/{job.shot_id}.mp4{PARTIAL_SUFFIX}")
        output.parent.mkdir(parents=True, exist_ok=True)
        started = time.time()
        try:
            project = self.stage.project(location)
            result = engine.render(self.stage.job(job), output, _no_progress, project=project)
            clip = output.read_bytes()
        except HintedError as err:
            raise StoryreelError.from_error(err, f"shot {job.shot_id}: ") from None
        finally:
            output.unlink(missing_ok=True)
        seconds = time.perf_counter() - began
        return ShotOutput(clip, result, engine.name, engine.versions(), started, self.where(), seconds)

    def close(self) -> None:
        """Remove the staging folder."""
        self.stage.close()


def _no_progress(done: int, total: int) -> None:
    """Steps are not reported across the cluster: the driver's bar counts shots."""
