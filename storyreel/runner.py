"""The runner: stories → jobs → clips → reel, resumable, locked, on one process, many, or a Ray cluster.

* **Resume**: a shot is skipped when its clip in the story's view (``renders/<id>.mp4`` and
  ``renders/<id>.json``, see :mod:`storyreel.project`) records the job key and the clip checks out
  against the size and hash the record holds (the files are not touched); a damaged clip is replaced
  (rendered again, or linked from the store when it holds a sound copy) with a
  :class:`DamagedClipWarning`. ``--force`` re-renders, ``--only`` picks shots.
* **Reuse**: a job whose key the clip store already holds, checked the same way (another story or
  variant rendered it), is linked into the view, not rendered (:mod:`storyreel.clip_store`); within a
  batch, a clip two stories share is rendered once.
* **Atomic**: clips and records are written under unique ``*.partial`` names and renamed; Ctrl-C /
  SIGTERM stop after removing the partial files; partials left by a killed process are removed by the
  next render.
* **Lock**: a render holds ``.storyreel/lock`` exclusively (a second one waits ``wait`` seconds, then
  refuses naming the holder).
* **accelerate** (``--gpus N``, one machine): under ``accelerate launch`` process 0 takes the lock and
  decides the todo list, shots are dealt round robin, every process loads the model once, and process 0
  builds the reel after a barrier. With ``parallel="shot"`` (``--parallel shot``) every process renders
  every shot instead, in the same order with the same job, the clip's tokens split over the GPUs
  (context parallelism); process 0 alone fills the caches first and writes the clips and records.
* **Ray** (``--ray``, any number of machines): :mod:`storyreel.cluster` replaces :meth:`Runner.render_all`;
  planning, locking, records and the reel stay here.
* **Batches**: several stories (and ``--set`` variants) in one call share the loaded engines and the
  project locks; two of them may not write the same reel. With ``keep_going`` a failing
  story or shot does not stop the batch: every story ends with a status (``ok``, ``failed`` or
  ``not_run``) and its failures, each naming its shot; without it the batch stops at the first
  failure and the stories not reached are ``not_run``. User errors never escape :meth:`Runner.run`;
  bugs and Ctrl-C do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from storyreel import __version__
from storyreel.clip_store import clip_checksum, clip_problem, find_stored, link_into_view
from storyreel.errors import HintedError, StoryreelError, StoryreelWarning, user_hint
from storyreel.fsutil import PARTIAL_SUFFIX, atomic_path, atomic_write_json
from storyreel.locking import DEFAULT_WAIT_SECONDS, ProjectLock
from storyreel.plan import Overrides, RenderJob, job_status, plan_story, read_clip_meta, shot_cache
from storyreel.reporting import Reporter, as_reporter, shown_path
from storyreel.step_cache import CacheSetting

if TYPE_CHECKING:
    from storyreel.cluster import RayOptions
    from storyreel.engines.base import Engine, RenderResult
    from storyreel.engines.select import EngineChoice
    from storyreel.plan import EngineSpec
    from storyreel.project import Project
    from storyreel.story import Shot, Story


class DamagedClipWarning(StoryreelWarning):
    """A clip whose key is current failed its check against its record and is rendered again."""


PARALLEL_MODES = ("shots", "shot")
"""How ``--gpus N`` uses the GPUs: ``shots`` spreads the shots over them, ``shot`` puts each shot on all."""


@dataclass
class RenderOptions:
    """What ``storyreel render`` was asked to do (``engine=None``: each shot's ``engine:``, else the story's
    ``defaults.engine``; ``cfg_routing``, ``cache`` (a setting as in story.yaml) and ``cache_threshold``
    (short for a first-block cache): settings for every shot over the story's, see
    :class:`~storyreel.plan.Overrides`; ``parallel``: see :data:`PARALLEL_MODES`; ``cast_library``:
    ``--cast-library``; ``ray``: render on a Ray cluster, see :mod:`storyreel.cluster`)."""

    engine: str | None = None
    model: Path | None = None
    wan_model: Path | None = None
    force: bool = False
    only: list[str] | None = None
    memory: str = "auto"
    cfg_routing: str | None = None
    cache: CacheSetting | None = None
    cache_threshold: float | None = None
    parallel: str = "shots"
    reel: bool = True
    wait: float = DEFAULT_WAIT_SECONDS
    cast_library: Path | None = None
    ray: RayOptions | None = None
    keep_going: bool = False
    variables: dict[str, list[str]] = field(default_factory=dict)
    """``--set`` values by variable name; several values for a name render one variant each."""
    campaign: Path | None = None
    """Where to write the campaign page (default: :func:`storyreel.campaign.default_campaign_path`)."""

    def __post_init__(self) -> None:
        """Refuse an unknown engine, memory mode, parallel mode or setting up front, whichever engine the
        stories end up using."""
        from ingredients_model.memory_modes import MEMORY_MODES
        from storyreel.engines import ENGINES

        for name, value, allowed in (("engine", self.engine, ENGINES), ("memory", self.memory, MEMORY_MODES)):
            if value is not None and value not in allowed:
                raise StoryreelError(f"unknown {name} {value!r}", hint="use one of: " + ", ".join(allowed))
        if self.parallel not in PARALLEL_MODES:
            raise StoryreelError(
                f"unknown --parallel {self.parallel!r}", hint="use one of: " + ", ".join(PARALLEL_MODES)
            )
        Overrides.given(self.cfg_routing, self.cache, self.cache_threshold)  # checked now

    @property
    def overrides(self) -> Overrides:
        """The settings given for every shot."""
        return Overrides.given(self.cfg_routing, self.cache, self.cache_threshold)

    @property
    def shot_parallel(self) -> bool:
        """Each shot renders over all the launched processes (context parallelism)."""
        return self.parallel == "shot"


def check_shot_parallel(stories: Sequence[Story], options: RenderOptions) -> None:
    """Refuse what ``--parallel shot`` cannot render: an offloading memory mode (each GPU holds the whole
    model), and a shot with the first-block cache, whose skip decisions depend on the tokens each GPU holds
    (the GPUs would disagree)."""
    if not options.shot_parallel:
        return
    if options.memory not in ("auto", "none"):
        raise StoryreelError(
            f"--parallel shot keeps the whole model on each GPU; --memory {options.memory} cannot be used "
            "with it",
            hint="leave --memory at auto (it means none here), or use --parallel shots",
        )
    for story in stories:
        shots = [
            shot.id
            for shot in story.shots
            if (shot_cache(story, shot, options.overrides) or {}).get("kind") == "first_block"
        ]
        if shots:
            raise StoryreelError(
                f"{story.path}: the first-block cache cannot render one shot over several GPUs "
                f"(shots {', '.join(shots)}): its skip decisions depend on the tokens each GPU holds",
                hint="use `cache: taylorseer` or a mag cache for these shots (or --cache), or spread the "
                "shots over the GPUs with --parallel shots",
            )


log = logging.getLogger(__name__)
OK, FAILED, NOT_RUN = "ok", "failed", "not_run"


@dataclass
class Failure:
    """Why a story, or one of its shots (``shot_id``), failed: the user error's message and hint."""

    message: str
    hint: str | None = None
    shot_id: str | None = None

    @classmethod
    def from_error(cls, err: HintedError, shot_id: str | None = None) -> Failure:
        location = getattr(err, "location", None)
        message = f"{location}: {err.message}" if location else err.message
        return cls(message, user_hint(err), shot_id)

    def describe(self, story: str) -> str:
        """One line naming the story and the shot: ``demo/story.yaml: shot s2: no face found``."""
        if not self.shot_id and self.message.startswith(story):
            return self.message  # it names the story already
        shot = f"shot {self.shot_id}: " if self.shot_id else ""
        return f"{story}: {shot}{self.message.removeprefix(f'{story}: ')}"


@dataclass
class StoryReport:
    """What happened to one story: its status, the shots rendered, current or failed."""

    story_path: Path
    engine: str
    reason: str
    rendered: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    """Shots whose clip another story or variant had already rendered (linked from the clip store)."""
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    reel: Path | None = None
    reels: list[Path] = field(default_factory=list)
    """Every format's reel (``reel`` is the first)."""
    review: Path | None = None
    reel_note: str = ""
    notes: list[str] = field(default_factory=list)
    """What the reel assembly adjusted or fell back on (reframing, clamped transitions, fonts)."""
    variables: dict[str, str] = field(default_factory=dict)
    """The variant's variable values (``vars:`` and ``--set``)."""
    campaign: Path | None = None
    """The campaign page over the whole batch, when one was written."""
    main_process: bool = True
    status: str = OK
    failures: list[Failure] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The story as lines about it name it: ``a/ad.yaml`` or ``a/ad.yaml (product=boots)``."""
        return story_label(self.story_path, self.variables)

    @property
    def failed_shots(self) -> list[str]:
        return [f.shot_id for f in self.failures if f.shot_id]

    def to_json(self) -> dict[str, Any]:
        """The story's entry in ``storyreel render --json`` (paths absolute)."""
        return {
            "story": str(Path(self.story_path).absolute()),
            "status": self.status,
            "engine": self.engine or None,
            "engine_reason": self.reason or None,
            "variables": self.variables,
            "shots": {
                "rendered": self.rendered,
                "reused": self.reused,
                "current": self.skipped,
                "failed": self.failed_shots,
            },
            "render_seconds": self.seconds,
            "reel": str(self.reel.absolute()) if self.reel else None,
            "reels": [str(path.absolute()) for path in self.reels],
            "campaign": str(self.campaign.absolute()) if self.campaign else None,
            "notes": self.notes,
            "review": str(self.review.absolute()) if self.review else None,
            "note": self.reel_note or None,
            "failures": [{"shot": f.shot_id, "message": f.message, "hint": f.hint} for f in self.failures],
        }


def batch_totals(reports: Sequence[StoryReport], wall_seconds: float) -> dict[str, Any]:
    """The numbers a batch ends with: stories by status, shots rendered/current/failed, wall time."""
    return {
        "stories": len(reports),
        "ok": sum(r.status == OK for r in reports),
        "failed": sum(r.status == FAILED for r in reports),
        "not_run": sum(r.status == NOT_RUN for r in reports),
        "shots": {
            "rendered": sum(len(r.rendered) for r in reports),
            "reused": sum(len(r.reused) for r in reports),
            "current": sum(len(r.skipped) for r in reports),
            "failed": sum(len(r.failed_shots) for r in reports),
        },
        "wall_seconds": round(wall_seconds, 3),
    }


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


def story_label(path: Path, variables: dict[str, str]) -> str:
    """How lines name a story, or one variant of it: ``a/ad.yaml (product=boots)``."""
    values = ", ".join(f"{k}={v}" for k, v in sorted(variables.items()))
    return shown_path(path) + (f" ({values})" if values else "")


def remove_partials(project: Project) -> list[Path]:
    """Delete ``*.partial`` files a killed render left in the clip store, the view and next to the reel."""
    removed = []
    for folder in {project.clip_store_dir, project.renders_dir, project.reel_path.parent}:
        if folder.is_dir():
            for path in folder.glob(f"*{PARTIAL_SUFFIX}"):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def clip_record(
    job: RenderJob,
    engine: str,
    versions: dict[str, str],
    result: RenderResult,
    started: float,
    clip: Path,
    **where: Any,
) -> dict[str, Any]:
    """The JSON written next to a clip: job, key, the ``clip``'s size and hash (so it can be verified
    later), engine, versions, timings, peak memory, and ``where`` it was rendered (host, pid, and the
    accelerate process index or the Ray worker)."""
    return {
        "shot_id": job.shot_id,
        "key": job.key,
        "clip": clip_checksum(clip),
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
    """One story of a batch while it renders: its project, each shot's engine, the jobs and what this process
    renders."""

    story: Story
    project: Project
    choices: dict[str, EngineChoice]  # by shot id
    engines: dict[str, Engine]  # by shot id
    jobs: list[RenderJob]
    report: StoryReport
    mine: list[RenderJob] = field(default_factory=list)
    deferred: list[RenderJob] = field(default_factory=list)
    """Jobs another story of the batch renders (same project, same key): linked once it has."""
    todo_total: int = 0
    complete: bool = False  # its reel step is done: what remains is to report

    @property
    def label(self) -> str:
        """The story as lines about it name it (``a/story.yaml``, ``a/ad.yaml (product=boots)``)."""
        return self.report.label

    @property
    def live(self) -> bool:
        return self.report.status == OK

    def spec(self, shot: Shot) -> EngineSpec:
        """The spec of ``shot``'s engine (planning)."""
        return self.engines[shot.id].spec()

    def choice_of(self, job: RenderJob) -> EngineChoice:
        """Which engine renders ``job``, and why."""
        return self.choices[job.shot_id]

    def engine_of(self, job: RenderJob) -> Engine:
        """The engine that renders ``job``."""
        return self.engines[job.shot_id]

    def tried_all(self) -> bool:
        """Every job of this process was rendered or failed (not cut short by fail-fast)."""
        tried = {*self.report.rendered, *self.report.failed_shots}
        return all(job.shot_id in tried for job in self.mine)


class Runner:
    """Renders a batch of stories with shared engines; see the module docstring.

    :meth:`render_all` renders the jobs each story has to do in this process; a subclass may render them
    elsewhere (:class:`storyreel.cluster.driver.RayRunner`); planning, locks, records and reels stay here.
    ``console`` is where notices, errors and progress go: a :class:`~storyreel.reporting.Reporter`
    (verbosity included), or a rich console (normal verbosity); stderr when None.
    """

    def __init__(self, options: RenderOptions, console: Reporter | Console | None = None):
        self.options = options
        self.reporter = as_reporter(console)
        self.console = self.reporter.console
        self.processes = Processes()
        self.engines: dict[tuple[str, Path | None], Engine] = {}
        self.loaded: set[int] = set()
        self.locks: dict[Path, ProjectLock] = {}  # one per project folder, shared by its stories
        self.reel_writers: dict[Path, str] = {}  # reel file → the story (label) that writes it
        self.planned: set[tuple[Path, str]] = set()  # (project, key) some story of the batch renders
        self.stopped = False  # a failure under fail-fast: start nothing new

    def say(self, text: str) -> None:
        self.reporter.notice(self._prefix() + text)

    def _prefix(self) -> str:
        return f"[dim]\\[process {self.processes.index}][/] " if self.processes.count > 1 else ""

    def fail(self, report: StoryReport, err: HintedError, shot_id: str | None = None) -> None:
        """Record a user error on ``report`` (naming the shot), say it now, and stop if fail-fast."""
        failure = Failure.from_error(err, shot_id)
        report.failures.append(failure)
        report.status = FAILED
        if self.writes_clips:  # with --parallel shot, process 0 speaks for all
            self.reporter.error(failure.describe(report.label), failure.hint)
        log.debug("the failure above", exc_info=err)
        if not self.options.keep_going:
            self.stopped = True

    # --------------------------------------------------------------------------------------- setup

    def gpu_name(self) -> str | None:
        """The GPU the ``auto`` engine may use (this machine's first CUDA GPU), or None."""
        from storyreel.engines.select import cuda_device_name

        return cuda_device_name()

    def engines_for(self, story: Story) -> tuple[dict[str, EngineChoice], dict[str, Engine]]:
        """Each shot's engine choice and engine, by shot id (every engine built once per batch)."""
        from storyreel.engines.select import choose_shot_engines, make_engine

        options = self.options
        choices = choose_shot_engines(
            story, options.engine, options.model, options.wan_model, gpu_name=self.gpu_name
        )
        if options.shot_parallel:
            others = {shot_id: c for shot_id, c in choices.items() if c.name != "ingredients"}
            if others:
                choice = next(iter(others.values()))
                raise StoryreelError(
                    f"--parallel shot splits one clip of the Ingredients model over the GPUs, but shot(s) "
                    f"{', '.join(others)} render with the {choice.name} engine ({choice.reason})",
                    hint="give the model with --model and --engine ingredients, or use --parallel shots",
                )
        engines = {}
        for shot_id, choice in choices.items():
            key = (choice.name, choice.model_dir)
            if key not in self.engines:
                self.engines[key] = make_engine(
                    choice,
                    device=self.processes.device,
                    memory=options.memory,
                    context_parallel=options.shot_parallel,
                )
                if self.processes.is_main:
                    self.say(f"engine: [bold]{choice.name}[/] — {escape(choice.reason)}")
            engines[shot_id] = self.engines[key]
        return choices, engines

    def plan(self, work: StoryWork, only: list[str] | None) -> list[RenderJob]:
        return plan_story(work.story, work.spec, only=only, overrides=self.options.overrides)

    def todo(self, work: StoryWork) -> list[RenderJob]:
        if self.options.force:
            return list(work.jobs)
        todo = []
        for job in work.jobs:
            status = job_status(job, work.project)
            if status == "damaged":
                clip = work.project.clip_path(job.shot_id)
                why = clip_problem(clip, read_clip_meta(work.project, job.shot_id) or {})
                warnings.warn(
                    f"shot {job.shot_id}: the clip {clip} is damaged ({why}); replacing it",
                    DamagedClipWarning,
                    stacklevel=2,
                )
            if status != "done":
                todo.append(job)
        return todo

    def lock(self, work: StoryWork) -> None:
        """Hold ``work``'s project lock (once per project folder, for every story in it)."""
        root = work.project.root
        if root not in self.locks:
            lock = ProjectLock(work.project.lock_path, wait=self.options.wait, on_wait=self.say)
            lock.acquire()
            self.locks[root] = lock

    def reuse(self, work: StoryWork, jobs: list[RenderJob], *, fresh: bool = False) -> list[RenderJob]:
        """Link the jobs whose clip the store already holds into the view; return the others.

        Under ``--force`` only clips rendered by this batch count (``fresh``: the caller knows they were).
        """
        left = []
        for job in jobs:
            found = None if self.options.force and not fresh else find_stored(work.project, job)
            if found is None:
                left.append(job)
            else:
                link_into_view(work.project, job, *found)
                work.report.reused.append(job.shot_id)
        return left

    def once(self, work: StoryWork, jobs: list[RenderJob]) -> list[RenderJob]:
        """The jobs no earlier story of the batch renders; the others are deferred (linked later)."""
        mine = []
        for job in jobs:
            key = (work.project.root, job.key)
            if key in self.planned:
                work.deferred.append(job)
            else:
                self.planned.add(key)
                mine.append(job)
        return mine

    def open_project(self, work: StoryWork) -> None:
        """Lock the project, clean up after killed renders, link clips the store already holds and decide
        which jobs this process renders."""
        processes = self.processes
        error = None
        todo_ids: list[str] = []
        if processes.is_main:
            try:
                self.lock(work)
                remove_partials(work.project)
                todo_ids = [job.shot_id for job in self.once(work, self.reuse(work, self.todo(work)))]
            except StoryreelError as err:
                error = (err.message, err.hint)
        error, todo_ids = processes.share((error, todo_ids))
        if error is not None:
            raise StoryreelError(*error)
        by_id = {job.shot_id: job for job in work.jobs}
        todo = [by_id[i] for i in todo_ids]
        work.mine = todo if self.options.shot_parallel else todo[processes.index :: processes.count]
        work.todo_total = len(todo_ids)
        work.report.reused = processes.share(work.report.reused)
        elsewhere = {job.shot_id for job in work.deferred} | set(work.report.reused) | set(todo_ids)
        work.report.skipped = [job.shot_id for job in work.jobs if job.shot_id not in elsewhere]

    # -------------------------------------------------------------------------------------- render

    @property
    def writes_clips(self) -> bool:
        """This process writes the clips it renders (with ``--parallel shot`` only process 0 does)."""
        return self.processes.is_main or not self.options.shot_parallel

    def render_one(self, work: StoryWork, job: RenderJob, progress: Progress, steps_task: Any) -> float:
        """Render ``job`` into the clip store, then link it into the story's view."""
        if not self.writes_clips:  # rendering along with process 0, which keeps the clip
            with tempfile.TemporaryDirectory(prefix="storyreel-parallel-") as folder:
                clip = Path(folder) / "clip.mp4"
                result = work.engine_of(job).render(job, clip, lambda d, t: None, project=work.project)
            return result.seconds
        project = work.project
        clip, meta = project.stored_clip_path(job.key), project.stored_meta_path(job.key)
        name = escape(f"{work.label}: {job.shot_id}")
        progress.reset(steps_task, total=None, description=f"{name}: preparing")

        def on_step(done: int, total: int) -> None:
            progress.update(steps_task, completed=done, total=total, description=name)

        started = time.time()
        with atomic_path(clip) as tmp:
            result = work.engine_of(job).render(job, tmp, on_step, project=project)
        where = {"host": socket.gethostname(), "pid": os.getpid(), "process_index": self.processes.index}
        engine = work.engine_of(job)
        record = clip_record(job, engine.name, engine.versions(), result, started, clip, **where)
        atomic_write_json(meta, record)  # the record last: only then does the clip count as current
        link_into_view(project, job, clip, meta)
        return result.seconds

    def shot_done(self, work: StoryWork, shot_id: str, seconds: float, where: str = "") -> None:
        """Note a finished shot in the report and say so, naming the story."""
        work.report.rendered.append(shot_id)
        work.report.seconds[shot_id] = seconds
        self.say(f"[green]✓[/] {escape(work.label)}: {escape(shot_id)} ({seconds:.1f} s{where})")

    def render_all(self, works: Sequence[StoryWork], progress: Progress) -> None:
        """Render every story's ``mine`` in this process: engines load once and prepare the whole batch.
        A shot that fails is recorded (:meth:`fail`); after it the batch goes on unless fail-fast."""
        self.prepare(works)
        live = [w for w in works if w.live]
        total = sum(len(w.mine) for w in live)
        with progress if total else contextlib.nullcontext():
            shots_task = progress.add_task("shots", total=total)
            steps_task = progress.add_task("", total=None)
            for work in live:
                for job in work.mine:
                    if self.stopped:
                        break
                    try:
                        self.load(work.engine_of(job))
                        seconds = self.render_one(work, job, progress, steps_task)
                    except HintedError as err:
                        self.fail(work.report, err, job.shot_id)
                    else:
                        if self.writes_clips:
                            self.shot_done(work, job.shot_id, seconds)
                    progress.advance(shots_task)
            progress.remove_task(steps_task)

    def finish(self, work: StoryWork) -> None:
        """Build the reel and review page once every shot has a current clip, unless the last assembly
        (by a render or by `storyreel reel`) used exactly these clips and the story's own settings."""
        from storyreel.outputs import build_outputs, refresh_review
        from storyreel.reel import ReelWarning
        from storyreel.reel_record import reel_is_current, review_is_current

        report, story, project = work.report, work.story, work.project
        waiting = [job for job in self.plan_all(work) if job_status(job, project) != "done"]
        linked = self.reuse(work, waiting, fresh=True)  # --force renders, not what it left alone
        missing = [job.shot_id for job in linked if job_status(job, project) != "done"]
        if missing:
            report.reel_note = (
                f"reel not built: {len(missing)} shot(s) without a current clip ({', '.join(missing)})"
            )
            return
        if reel_is_current(story, project):
            report.reels = [project.root / fmt.file for fmt in story.output.reel_formats]
            report.reel, report.review = report.reels[0], project.review_path
            report.reel_note = "reel up to date" if len(report.reels) == 1 else "reels up to date"
            if not review_is_current(project):
                report.review = refresh_review(story, project)
            return
        what = "reel" if len(story.output.reel_formats) == 1 else f"{len(story.output.reel_formats)} reels"
        with self.reporter.bar(escape(f"{work.label}: {what}")) as update, warnings.catch_warnings():
            warnings.simplefilter("ignore", ReelWarning)  # reported with the story instead
            results, report.review = build_outputs(story, project, progress=update)
        report.reels = [result.path for result in results]
        report.reel = report.reels[0]
        report.notes = [note for result in results for note in result.warnings]

    def plan_all(self, work: StoryWork) -> list[RenderJob]:
        """All the story's jobs (``--only`` narrows what is rendered, not what the reel needs)."""
        if not self.options.only:
            return work.jobs
        return self.plan(work, None)

    # ----------------------------------------------------------------------------------------- run

    def load(self, engine: Engine) -> None:
        if id(engine) not in self.loaded:
            with (
                contextlib.nullcontext()
                if engine.name == "preview"
                else self.reporter.status(f"{self._prefix()}loading the {engine.name} engine …")
            ):  # the preview has nothing to load
                engine.load()
            self.loaded.add(id(engine))

    def prepare(self, works: Sequence[StoryWork]) -> None:
        """Load each engine that has work (once) and let it prepare the whole batch up front
        (the model engine encodes every prompt and identity, then may free its text encoder). An engine
        that cannot load fails every story that uses it.

        With ``--parallel shot`` every process loads first (setting up context parallelism is collective),
        then process 0 prepares, filling the caches, and then the others, which read them: no two processes
        build one cache entry."""
        live = [w for w in works if w.live and w.mine]
        work = [(w.engine_of(job), job, w) for w in live for job in w.mine]
        take_turns = self.options.shot_parallel
        if take_turns:
            self._prepare(work, load_only=True)
            if not self.processes.is_main:
                self.processes.barrier()  # until process 0 has filled the caches
        self._prepare(work)
        if take_turns and self.processes.is_main:
            self.processes.barrier()

    def _prepare(self, work: list[tuple[Engine, RenderJob, StoryWork]], load_only: bool = False) -> None:
        for engine in {id(engine): engine for engine, _, _ in work}.values():
            users = [(job, w) for used, job, w in work if used is engine]
            if self.stopped:
                return
            try:
                self.load(engine)
                prepare = getattr(engine, "prepare", None)
                if prepare is not None and not load_only:
                    prepare([(job, w.project) for job, w in users])
            except HintedError as err:
                for story in {id(w): w for _, w in users}.values():
                    self.fail(story.report, err)

    def progress(self) -> Progress:
        """The progress display (process 0 only): shots of the whole batch, and the current shot's steps."""
        progress = self.reporter.progress()
        progress.disable = progress.disable or not self.processes.is_main
        return progress

    def _start(self, story: Story) -> StoryWork | StoryReport:
        """The story's engine and jobs, or its failed report."""
        from storyreel.project import Project

        report = StoryReport(story.path, "", "", variables=story.variables)
        for warning in story.consent_warnings if self.processes.is_main else ():
            self.reporter.warning(str(warning))
        try:
            if self.options.shot_parallel and self.processes.count < 2:
                raise StoryreelError(
                    "--parallel shot renders each shot over several processes, one per GPU; this is one",
                    hint="run `storyreel render --gpus N --parallel shot` with N >= 2 (it starts them)",
                )
            check_shot_parallel([story], self.options)
            self.claim_reels(story)
            choices, engines = self.engines_for(story)
            distinct = {choice.name: choice.reason for choice in choices.values()}
            report.engine, report.reason = ", ".join(distinct), "; ".join(distinct.values())
            work = StoryWork(story, Project.from_story(story), choices, engines, [], report)
            work.jobs = self.plan(work, self.options.only)
        except HintedError as err:
            self.fail(report, err)
            return report
        return work

    def claim_reels(self, story: Story) -> None:
        """Refuse a story (or variant) that would write a reel an earlier one of the batch writes."""
        from storyreel.project import Project

        root = Project.from_story(story).root
        for fmt in story.output.reel_formats:
            path = root / fmt.file
            other = self.reel_writers.setdefault(path, story_label(story.path, story.variables))
            if other != story_label(story.path, story.variables):
                raise StoryreelError(
                    f"{shown_path(path)} is also the reel of {other}",
                    hint="give each story or variant its own reel: output.file with a variable, e.g. "
                    "file: reel-${product}.mp4",
                )

    def run(self, stories: Sequence[Story]) -> list[StoryReport]:
        started = [self._start(story) if not self.stopped else None for story in stories]
        reports = [s.report if isinstance(s, StoryWork) else s for s in started]
        works = [s for s in started if isinstance(s, StoryWork)]
        with _sigterm_interrupts():
            try:
                for work in sorted(works, key=lambda w: str(w.project.root)):  # a fixed order: no deadlocks
                    if self.stopped:
                        break
                    try:
                        self.open_project(work)
                    except HintedError as err:
                        self.fail(work.report, err)
                live = [w for w in works if w.live]
                if self.processes.is_main and live and not any(w.todo_total for w in live):
                    how = " (linked from the clip store)" if any(w.report.reused for w in live) else ""
                    self.say(f"nothing to render: every shot has a current clip{how} (--force renders again)")
                self.render_all(live, self.progress())
                self.processes.barrier()
                if self.processes.is_main:
                    for work in live:
                        self.reuse(work, work.deferred, fresh=True)  # clips another story just rendered
                for work in works:
                    report = work.report
                    if not self.options.shot_parallel:  # with it, every process rendered every shot
                        report.rendered = self.processes.gather(report.rendered)
                        shots = self.processes.gather([f for f in report.failures if f.shot_id])
                        report.failures = [f for f in report.failures if not f.shot_id] + shots  # story: all
                    report.status = FAILED if report.failures else report.status
                    report.main_process = self.processes.is_main
                for work in works:  # under fail-fast, only stories whose shots were all tried
                    if failed := set(work.report.failed_shots):
                        named = ", ".join(job.shot_id for job in work.jobs if job.shot_id in failed)
                        work.report.reel_note = f"reel not built: {len(failed)} shot(s) failed ({named})"
                    if not work.live or (self.stopped and not work.tried_all()):
                        continue
                    try:
                        if self.options.reel and self.processes.is_main:
                            self.finish(work)
                        work.complete = True
                    except HintedError as err:
                        self.fail(work.report, err)
                self.processes.close()
            except KeyboardInterrupt:
                self.reporter.console.print(  # shown even with --quiet
                    self._prefix() + "[yellow]stopped[/]: partial files removed; run the same command again "
                    "to continue",
                    highlight=False,
                )
                raise
            finally:
                for lock in self.locks.values():
                    lock.release()
                self.locks.clear()
        for work in works:  # under fail-fast: stories that had not got their turn (or were cut short)
            if work.live and not work.complete and work.report.status != FAILED:
                work.report.status = NOT_RUN
        return [
            report
            if report is not None
            else StoryReport(story.path, "", "", status=NOT_RUN, variables=story.variables)
            for story, report in zip(stories, reports, strict=True)
        ]


def render_stories(
    paths: Sequence[Path], options: RenderOptions, console: Reporter | Console | None = None
) -> list[StoryReport]:
    """Load and render every story in ``paths``, once per variant of ``options.variables`` (``--set``:
    several values for a name make one variant each, every combination of them), engines shared across
    the batch; see :class:`Runner` (:class:`storyreel.cluster.driver.RayRunner` when ``options.ray`` is
    set). Then write the campaign page when the batch has several stories or variants (or
    ``options.campaign`` asks for one).

    Returns one report per distinct story and variant, in order. A story that does not load is
    ``failed`` (and, without ``options.keep_going``, nothing is rendered: the others are ``not_run``).
    """
    from storyreel.story import load_story, variants

    if options.ray is not None:
        from storyreel.cluster.driver import RayRunner

        runner: Runner = RayRunner(options, console)
    else:
        runner = Runner(options, console)

    def identity(path: Path, values: dict[str, str]) -> tuple[Path, tuple]:
        return path, tuple(sorted(values.items()))

    loaded: list[Story | StoryReport] = []
    seen: set[tuple[Path, tuple]] = set()
    for path in paths:
        for values in variants(options.variables):
            try:
                story = load_story(Path(path), values, cast_library=options.cast_library)
            except HintedError as err:
                report = StoryReport(Path(path), "", "", variables=values)
                runner.fail(report, err)
                loaded.append(report)
                continue
            if identity(story.path, story.variables) not in seen:
                seen.add(identity(story.path, story.variables))
                loaded.append(story)
    stories = [item for item in loaded if not isinstance(item, StoryReport)]
    if runner.stopped:
        reports = [StoryReport(s.path, "", "", status=NOT_RUN, variables=s.variables) for s in stories]
    else:
        reports = runner.run(stories)
    rendered = {identity(r.story_path, r.variables): r for r in reports}
    results = [
        item if isinstance(item, StoryReport) else rendered[identity(item.path, item.variables)]
        for item in loaded
    ]
    done = [s for s in stories if rendered[identity(s.path, s.variables)].reels]
    if options.reel and runner.processes.is_main and done:
        from storyreel.campaign import wants_campaign, write_campaign

        if options.campaign is not None or wants_campaign(stories):
            page = write_campaign(done, options.campaign, reports=reports)
            for report in reports:
                report.campaign = page
    return results


def load_stories(
    paths: Sequence[Path], variables: dict[str, list[str]] | None = None, *, cast_library: Path | None = None
) -> list[Story]:
    """Every story in ``paths``, once per variant of ``variables`` (as :func:`render_stories` loads
    them; ``cast_library``: ``--cast-library``), in order, without repeats; the first that does not load
    raises its error."""
    from storyreel.story import load_story, variants

    stories, seen = [], set()
    for path in paths:
        for values in variants(variables or {}):
            story = load_story(Path(path), values, cast_library=cast_library)
            identity = (story.path, tuple(sorted(story.variables.items())))
            if identity not in seen:
                seen.add(identity)
                stories.append(story)
    return stories
