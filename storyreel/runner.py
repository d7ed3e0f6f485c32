"""The runner: stories → jobs → clips → reel, resumable, locked, on one process, many, or a Ray cluster.

* **Resume**: a shot is skipped when ``renders/<id>.mp4`` and ``renders/<id>.json`` exist and the JSON's
  key equals the job key (the files are not touched); ``--force`` re-renders, ``--only`` picks shots.
* **Atomic**: clips and records are written as ``*.partial`` and renamed; Ctrl-C / SIGTERM stop after
  removing the partial files; partials left by a killed process are removed by the next render.
* **Lock**: a render holds ``.storyreel/lock`` exclusively (a second one waits ``wait`` seconds, then
  refuses naming the holder).
* **accelerate** (``--gpus N``, one machine): under ``accelerate launch`` process 0 takes the lock and
  decides the todo list, shots are dealt round robin, every process loads the model once, and process 0
  builds the reel after a barrier.
* **Ray** (``--ray``, any number of machines): :mod:`storyreel.cluster` replaces :meth:`Runner.render_all`;
  planning, locking, records and the reel stay here.
* **Batches**: several stories in one call share the loaded engines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from storyreel import __version__
from storyreel.errors import HintedError, StoryreelError
from storyreel.fsutil import PARTIAL_SUFFIX, atomic_path, atomic_write_json, partial_path
from storyreel.locking import DEFAULT_WAIT_SECONDS, ProjectLock
from storyreel.plan import RenderJob, job_status, plan_story

if TYPE_CHECKING:
    from storyreel.cluster import RayOptions
    from storyreel.engines.base import Engine, RenderResult
    from storyreel.engines.select import EngineChoice
    from storyreel.project import Project
    from storyreel.story import Story


@dataclass
class RenderOptions:
    """What ``storyreel render`` was asked to do (``engine=None``: the story's ``defaults.engine``;
    ``ray``: render on a Ray cluster, see :mod:`storyreel.cluster`)."""

    engine: str | None = None
    model: Path | None = None
    force: bool = False
    only: list[str] | None = None
    memory: str = "auto"
    cache_threshold: float | None = None
    reel: bool = True
    wait: float = DEFAULT_WAIT_SECONDS
    ray: RayOptions | None = None


@dataclass
class StoryReport:
    """What happened to one story (``failed``: shot id → error, for shots a Ray render gave up on)."""

    story_path: Path
    engine: str
    reason: str
    rendered: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    reel: Path | None = None
    review: Path | None = None
    reel_note: str = ""
    main_process: bool = True


# ------------------------------------------------------------------------------------------- processes


class Processes:
    """This process's place among ``accelerate launch`` processes (one process alone otherwise)."""

    def __init__(self) -> None:
        self.state = None
        self.index, self.count, self.device = 0, 1, None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch
            from accelerate import PartialState

            # ranks wait for each other at barriers for up to a whole shot: far beyond NCCL's default 10 min
            self.state = PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(hours=6))
            self.index, self.count = self.state.process_index, self.state.num_processes
            device = self.state.device
            self.device = str(device) if device is not None and device.type == "cuda" else None

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def close(self) -> None:
        """Wait until every process is done (process 0 builds the reel), then leave the process group:
        exiting with the group still up can abort the process (gloo threads)."""
        if self.state is not None:
            self.state.wait_for_everyone()
            self.state.destroy_process_group()

    def gather(self, items: list) -> list:
        """The concatenation of ``items`` from every process, on every process."""
        if self.state is None:
            return items
        from accelerate.utils import gather_object

        return list(gather_object(items))

    def share(self, value: Any) -> Any:
        """``value`` of process 0, on every process."""
        if self.state is None:
            return value
        from accelerate.utils import broadcast_object_list

        box = [value]
        broadcast_object_list(box, from_process=0)
        return box[0]


# -------------------------------------------------------------------------------------------- signals


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while rendering, so partial files are cleaned up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------------------------------- helpers


def remove_partials(project: Project) -> list[Path]:
    """Delete ``*.partial`` files a killed render left in ``renders/`` and next to the reel."""
    removed = []
    for folder in {project.renders_dir, project.reel_path.parent}:
        if folder.is_dir():
            for path in folder.glob(f"*{PARTIAL_SUFFIX}"):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def clip_record(
    job: RenderJob, engine: str, versions: dict[str, str], result: RenderResult, started: float, **where: Any
) -> dict[str, Any]:
    """The JSON written next to a clip: job, key, engine, versions, timings, peak memory, and ``where``
    it was rendered (host, pid, and the accelerate process index or the Ray worker)."""
    return {
        "shot_id": job.shot_id,
        "key": job.key,
        "engine": engine,
        "job": job.model_dump(mode="json"),
        "versions": {"storyreel": __version__, **versions},
        "frames": result.frames,
        "fps": result.fps,
        "width": result.width,
        "height": result.height,
        "seconds": result.frames / result.fps,
        "render_seconds": round(result.seconds, 3),
        "timings": {name: round(value, 3) for name, value in result.timings.items()},
        "peak_memory_bytes": result.peak_memory_bytes,
        "peak_memory_kind": result.peak_memory_kind,
        "details": result.details,
        **where,
        "rendered_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
    }


# -------------------------------------------------------------------------------------------- runner


@dataclass
class StoryWork:
    """One story of a batch while it renders: its project, engine, jobs and what this process renders."""

    story: Story
    project: Project
    choice: EngineChoice
    engine: Engine
    jobs: list[RenderJob]
    report: StoryReport
    lock: ProjectLock | None = None
    mine: list[RenderJob] = field(default_factory=list)
    todo_total: int = 0


class Runner:
    """Renders a batch of stories with shared engines; see the module docstring.

    :meth:`render_all` renders the jobs each story has to do in this process; a subclass may render them
    elsewhere (:class:`storyreel.cluster.driver.RayRunner`); planning, locks, records and reels stay here.
    """

    def __init__(self, options: RenderOptions, console: Console | None = None):
        self.options = options
        self.console = console or Console()
        self.processes = Processes()
        self.engines: dict[tuple[str, Path | None], Engine] = {}
        self.loaded: set[int] = set()

    def say(self, text: str) -> None:
        prefix = f"[dim]\\[process {self.processes.index}][/] " if self.processes.count > 1 else ""
        self.console.print(prefix + text, highlight=False)

    # --------------------------------------------------------------------------------------- setup

    def gpu_name(self) -> str | None:
        """The GPU the ``auto`` engine may use (this machine's first CUDA GPU), or None."""
        from storyreel.engines.select import cuda_device_name

        return cuda_device_name()

    def engine_for(self, story: Story) -> tuple[EngineChoice, Engine]:
        from storyreel.engines.select import choose_engine, make_engine, resolve_model_dir

        model_dir, source = resolve_model_dir(self.options.model, story)
        requested = self.options.engine or story.defaults.engine
        choice = choose_engine(requested, model_dir, source, gpu_name=self.gpu_name)
        key = (choice.name, choice.model_dir)
        if key not in self.engines:
            self.engines[key] = make_engine(choice, device=self.processes.device, memory=self.options.memory)
            if self.processes.is_main:
                self.say(f"engine: [bold]{choice.name}[/] — {choice.reason}")
        return choice, self.engines[key]

    def plan(self, story: Story, engine: Engine) -> list[RenderJob]:
        return plan_story(
            story, engine.spec(), only=self.options.only, cache_threshold=self.options.cache_threshold
        )

    def todo(self, work: StoryWork) -> list[RenderJob]:
        if self.options.force:
            return list(work.jobs)
        return [job for job in work.jobs if job_status(job, work.project) != "done"]

    def open_project(self, work: StoryWork) -> None:
        """Lock the project, clean up after killed renders and decide which jobs this process renders."""
        options, processes = self.options, self.processes
        error = None
        todo_ids: list[str] = []
        if processes.is_main:
            try:
                work.lock = ProjectLock(work.project.lock_path, wait=options.wait, on_wait=self.say)
                work.lock.acquire()
                remove_partials(work.project)
                todo_ids = [job.shot_id for job in self.todo(work)]
            except StoryreelError as err:
                error = (err.message, err.hint)
        error, todo_ids = processes.share((error, todo_ids))
        if error is not None:
            raise StoryreelError(*error)
        by_id = {job.shot_id: job for job in work.jobs}
        work.mine = [by_id[i] for i in todo_ids][processes.index :: processes.count]
        work.todo_total = len(todo_ids)
        work.report.skipped = [job.shot_id for job in work.jobs if job.shot_id not in todo_ids]

    # -------------------------------------------------------------------------------------- render

    def render_one(self, work: StoryWork, job: RenderJob, progress: Progress, steps_task: Any) -> float:
        project = work.project
        clip, meta = project.clip_path(job.shot_id), project.clip_meta_path(job.shot_id)
        progress.reset(steps_task, total=None, description=f"{job.shot_id}: preparing")

        def on_step(done: int, total: int) -> None:
            progress.update(steps_task, completed=done, total=total, description=f"{job.shot_id}")

        started = time.time()
        partial_path(clip).unlink(missing_ok=True)
        try:
            with atomic_path(clip) as tmp:
                result = work.engine.render(job, tmp, on_step, project=project)
        except HintedError as err:
            raise StoryreelError.from_error(err, f"shot {job.shot_id}: ") from err
        where = {"host": socket.gethostname(), "pid": os.getpid(), "process_index": self.processes.index}
        record = clip_record(job, work.engine.name, work.engine.versions(), result, started, **where)
        atomic_write_json(meta, record)  # the record last: only then does the clip count as current
        return result.seconds

    def shot_done(self, work: StoryWork, shot_id: str, seconds: float, where: str = "") -> None:
        """Note a finished shot in the report and say so."""
        work.report.rendered.append(shot_id)
        work.report.seconds[shot_id] = seconds
        self.say(f"[green]✓[/] {work.project.root.name}/{shot_id} ({seconds:.1f} s{where})")

    def render_all(self, works: Sequence[StoryWork], progress: Progress) -> None:
        """Render every story's ``mine`` in this process: engines load once and prepare the whole batch."""
        self.prepare(works)
        total = sum(len(w.mine) for w in works)
        with progress if total else contextlib.nullcontext():
            shots_task = progress.add_task("shots", total=total)
            steps_task = progress.add_task("", total=None)
            for work in works:
                for job in work.mine:
                    self.load(work.engine)
                    seconds = self.render_one(work, job, progress, steps_task)
                    progress.advance(shots_task)
                    self.shot_done(work, job.shot_id, seconds)
            progress.remove_task(steps_task)

    def finish(self, work: StoryWork) -> None:
        """Build the reel and review page once every shot has a current clip, unless the last assembly
        (by a render or by `storyreel reel`) used exactly these clips and the story's own settings."""
        from storyreel.outputs import build_outputs, refresh_review
        from storyreel.reel_record import reel_is_current, review_is_current

        report, story, project = work.report, work.story, work.project
        missing = [job.shot_id for job in self.plan_all(work) if job_status(job, project) != "done"]
        if missing:
            report.reel_note = (
                f"reel not built: {len(missing)} shot(s) without a current clip ({', '.join(missing)})"
            )
            return
        if reel_is_current(story, project):
            report.reel, report.review = project.reel_path, project.review_path
            report.reel_note = "reel up to date"
            if not review_is_current(project):
                report.review = refresh_review(story, project)
            return
        result, report.review = build_outputs(story, project)
        report.reel = result.path

    def plan_all(self, work: StoryWork) -> list[RenderJob]:
        """All the story's jobs (``--only`` narrows what is rendered, not what the reel needs)."""
        if not self.options.only:
            return work.jobs
        return plan_story(work.story, work.engine.spec(), cache_threshold=self.options.cache_threshold)

    # ----------------------------------------------------------------------------------------- run

    def load(self, engine: Engine) -> None:
        if id(engine) not in self.loaded:
            if self.processes.is_main and engine.name != "preview":  # the preview has nothing to load
                self.say(f"loading the {engine.name} engine …")
            engine.load()
            self.loaded.add(id(engine))

    def prepare(self, works: Sequence[StoryWork]) -> None:
        """Load each engine that has work (once) and let it prepare the whole batch up front
        (the model engine encodes every prompt and identity, then may free its text encoder)."""
        for engine in {id(w.engine): w.engine for w in works if w.mine}.values():
            self.load(engine)
            prepare = getattr(engine, "prepare", None)
            if prepare is not None:
                prepare([(job, w.project) for w in works if w.engine is engine for job in w.mine])

    def progress(self) -> Progress:
        """The progress display: shots of the whole batch, and the current shot's steps."""
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.processes.is_main,
        )

    def run(self, stories: Sequence[Story]) -> list[StoryReport]:
        from storyreel.project import Project

        works = []
        for story in stories:
            choice, engine = self.engine_for(story)
            report = StoryReport(story.path, choice.name, choice.reason)
            project = Project.from_story(story)
            works.append(StoryWork(story, project, choice, engine, self.plan(story, engine), report))
        with _sigterm_interrupts():
            try:
                for work in sorted(works, key=lambda w: str(w.project.root)):  # a fixed order: no deadlocks
                    self.open_project(work)
                if self.processes.is_main and not any(w.todo_total for w in works):
                    self.say("nothing to render: every shot has a current clip (--force renders again)")
                self.render_all(works, self.progress())
                self.processes.barrier()
                for work in works:
                    work.report.rendered = self.processes.gather(work.report.rendered)
                    work.report.main_process = self.processes.is_main
                if self.options.reel and self.processes.is_main:
                    for work in works:
                        self.finish(work)
                self.processes.close()
            except KeyboardInterrupt:
                self.say("[yellow]stopped[/]: partial files removed; run the same command again to continue")
                raise
            finally:
                for work in works:
                    if work.lock is not None:
                        work.lock.release()
                        work.lock = None
        return [work.report for work in works]


def render_stories(
    paths: Sequence[Path], options: RenderOptions, console: Console | None = None
) -> list[StoryReport]:
    """Load and render every story in ``paths`` (engines shared across the batch); see :class:`Runner`
    (:class:`storyreel.cluster.driver.RayRunner` when ``options.ray`` is set)."""
    from storyreel.story import load_story

    stories, seen = [], set()
    for path in paths:
        story = load_story(Path(path))
        if story.path not in seen:
            seen.add(story.path)
            stories.append(story)
    if options.ray is not None:
        from storyreel.cluster.driver import RayRunner

        return RayRunner(options, console).run(stories)
    return Runner(options, console).run(stories)
