"""The driver of a Ray render: connect, start the workers, fill the caches once, send the shots, write
what comes back (see :mod:`storyreel.cluster`). Planning, locks, records and reels are the
:class:`~storyreel.runner.Runner`'s; only :meth:`RayRunner.render_all` differs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from storyreel.clip_store import link_into_view
from storyreel.cluster import RayOptions
from storyreel.cluster.files import Files, Shipper, driver_path, project_location, travel_job
from storyreel.cluster.worker import ShotOutput, ShotWorker
from storyreel.engines.select import EngineChoice
from storyreel.errors import HintedError, StoryreelError
from storyreel.fsutil import atomic_write_bytes, atomic_write_json
from storyreel.plan import EngineSpec, RenderJob
from storyreel.runner import RenderOptions, Runner, StoryWork, clip_record

__all__ = ["RayRunner", "connect"]

CLUSTER_HINT = (
    "start a cluster with `ray start --head` (and `ray start --address HEAD:6379` on the other machines), "
    "then pass --ray-address HEAD:6379 or set $RAY_ADDRESS; without either, --ray starts a local Ray"
)


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[None]:
    """Connect to the Ray cluster at ``address`` (None: ``$RAY_ADDRESS``, else start a local one, as
    ``ray.init`` does) for the duration of the block; an already connected Ray is used as it is."""
    import ray

    if ray.is_initialized():
        yield
        return
    local = address is None and not os.environ.get("RAY_ADDRESS")
    try:
        ray.init(
            address=address,
            logging_level=logging.WARNING,
            **({"include_dashboard": False} if local else {}),
        )
    except (ConnectionError, ValueError, RuntimeError) as err:
        where = address or os.environ.get("RAY_ADDRESS") or "a new local Ray"
        raise StoryreelError(f"cannot connect to the Ray cluster at {where}: {err}", CLUSTER_HINT) from None
    try:
        yield
    finally:
        ray.shutdown()


def cluster_gpus() -> int:
    """GPUs of the connected cluster (all nodes)."""
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def _cost(job: RenderJob) -> int:
    """Relative work of a job, to send the largest first."""
    return job.frames * job.width * job.height * (job.steps or 1)


@dataclass
class _Shot:
    """A job on its way through the cluster."""

    work: StoryWork
    job: RenderJob  # as planned on the driver, and recorded
    travel: RenderJob  # photos as staged paths
    location: str
    files: Files
    attempts: int = 0
    tried: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:
        return f"{self.work.label}: {self.job.shot_id}"


class _Pool:
    """The worker actors: which are ready (engines loaded), which are still loading, which are gone."""

    def __init__(self, handles: list[Any], engines: list[tuple[EngineChoice, EngineSpec]]):
        self.handles = handles
        self.alive = set(range(len(handles)))
        self.loading = {handle.load.remote(engines): index for index, handle in enumerate(handles)}

    def loaded(self, ref: Any) -> int | str:
        """The index of the worker whose ``load`` call ``ref`` was, now ready, or the error that made it
        unusable (it is dropped: a worker that cannot load the engine would fail every shot)."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        index = self.loading.pop(ref)
        try:
            ray.get(ref)
        except (RayTaskError, RayActorError) as err:
            self.alive.discard(index)
            user = _user_error(err)
            return _describe(user) if user is not None else str(err)
        return index

    def first_ready(self, say: Any) -> int:
        """Wait for a worker to be ready and return it; refuses when every worker failed to load."""
        import ray

        error = "every worker died"
        while not (self.alive - set(self.loading.values())) and self.loading:
            (ref,), _ = ray.wait(list(self.loading), num_returns=1)
            found = self.loaded(ref)
            if isinstance(found, str):
                say(f"[red]✗[/] a Ray worker cannot render: {escape(found)}")
                error = found
        ready = sorted(self.alive - set(self.loading.values()))
        if not ready:
            raise StoryreelError(f"no Ray worker can render: {error}", CLUSTER_HINT)
        return ready[0]

    def stop(self, graceful: bool) -> None:
        """Stop every worker: ``graceful`` ones first remove their staging folders (after an error or
        Ctrl-C they are killed at once; the next worker on that machine removes the folders)."""
        import ray

        if graceful:
            closing = [self.handles[i].close.remote() for i in self.alive]
            with contextlib.suppress(Exception):
                ray.get(closing, timeout=30)
        for handle in self.handles:
            ray.kill(handle, no_restart=True)


class RayRunner(Runner):
    """A :class:`~storyreel.runner.Runner` whose shots render on Ray workers (``options.ray``)."""

    def __init__(self, options: RenderOptions, console: Console | None = None):
        super().__init__(options, console)
        if self.processes.count > 1:
            raise StoryreelError("--ray cannot run under accelerate launch", "use either --ray or --gpus N")
        self.ray: RayOptions = options.ray or RayOptions()
        self.round_trips: dict[str, tuple[float, float]] = {}
        """Per rendered shot: seconds from sending it to having its clip, and seconds the worker spent."""
        self.phases: dict[str, float] = {}
        """Seconds spent starting the workers and filling the caches (``setup``), then on the shots."""
        if self.ray.attempts < 1:
            raise StoryreelError("--ray-attempts must be at least 1")
        if self.ray.cpus_per_worker is not None and self.ray.cpus_per_worker <= 0:
            raise StoryreelError("--ray-cpus-per-worker must be more than 0")

    def run(self, stories: Sequence[Any]) -> list:
        with connect(self.ray.address):
            return super().run(stories)

    def gpu_name(self) -> str | None:
        gpus = cluster_gpus()
        return f"{gpus} GPU(s) of the Ray cluster" if gpus else None

    # ------------------------------------------------------------------------------------ workers

    def start_pool(self, shots: int, engines: list[tuple[EngineChoice, EngineSpec]]) -> _Pool:
        """One worker per GPU (``num_gpus=1``), or per ``cpus_per_worker`` CPUs on a CPU-only cluster;
        never more workers than shots. Each starts loading ``engines`` at once."""
        import ray

        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), resources.get("CPU", 0.0)
        per_worker = self.ray.cpus_per_worker
        if gpus:  # CPUs are reserved only when asked for: a GPU worker never waits for a CPU
            size, wanted = gpus, {"num_gpus": 1, "num_cpus": per_worker or 0}
            if per_worker:
                size = min(size, int(cpus // per_worker))
        else:
            size, wanted = int(cpus // (per_worker or 1)), {"num_cpus": per_worker or 1}
        if size < 1:
            raise StoryreelError(
                f"the Ray cluster has {cpus:g} CPUs and no GPU: not enough for one worker of "
                f"{per_worker or 1:g} CPUs",
                hint="lower --ray-cpus-per-worker, or add machines with `ray start --address HEAD:6379`",
            )
        size = min(size, shots)
        # Ray restarts a worker that dies; one that keeps dying is dropped and its shots go elsewhere
        actor = ray.remote(max_restarts=self.ray.attempts, max_task_retries=0, **wanted)(ShotWorker)
        how = "1 GPU" if gpus else f"{wanted['num_cpus']:g} CPU(s)"
        self.say(f"ray: {size} worker(s) of {how} each")
        return _Pool([actor.remote(i, self.options.memory) for i in range(size)], engines)

    # ------------------------------------------------------------------------------------ caches

    def fill_caches(self, pool: _Pool, shots: list[_Shot], shipper: Shipper) -> None:
        """Compute the missing cache entries of every shot once, on one worker, keep them in the
        projects' caches (a cast library member's in the library's) and add every entry a shot reads to
        its files."""
        groups: dict[tuple[EngineChoice, EngineSpec], list[_Shot]] = {}
        for shot in shots:
            work = shot.work
            groups.setdefault((work.choice_of(shot.job), work.engine_of(shot.job).spec()), []).append(shot)
        for (choice, spec), group in groups.items():
            jobs = [(shot.location, shot.travel) for shot in group]
            needs = self.call_any(pool, "cache_files", choice, spec, jobs)
            missing: dict[str, list[tuple[Path, _Shot]]] = {}
            for shot, names in zip(group, needs, strict=True):
                for staged in names:
                    path = driver_path(staged, shot.job, shot.work.project)
                    if path.is_file():
                        shot.files[staged] = shipper.ship_file(path)
                    else:
                        missing.setdefault(staged, []).append((path, shot))
            if not missing:
                continue
            entries = sum(name.endswith(".json") for name in missing)
            self.say(f"ray: computing {entries} cache entries once for the cluster …")
            files: Files = {name: item for shot in group for name, item in shot.files.items()}
            built = self.call_any(pool, "prepare", choice, spec, jobs, files, list(missing))
            for staged in sorted(built, key=lambda name: name.endswith(".json")):  # metadata last
                shipped = shipper.ship_bytes(built[staged])
                for path in {path for path, _ in missing[staged]}:
                    atomic_write_bytes(path, built[staged])
                for _, shot in missing[staged]:
                    shot.files[staged] = shipped

    def call_any(self, pool: _Pool, method: str, *args: Any) -> Any:
        """``method(*args)`` on a ready worker; on another one if that worker dies meanwhile."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        error: Exception | None = None
        for _ in range(self.ray.attempts):
            index = pool.first_ready(self.say)
            try:
                return ray.get(getattr(pool.handles[index], method).remote(*args))
            except RayTaskError as err:
                raise _user_error(err) or err from None
            except RayActorError as err:
                error = err
                if _is_dead(err):
                    pool.alive.discard(index)
        raise StoryreelError(f"the Ray workers kept dying while filling the caches: {error}", CLUSTER_HINT)

    # ------------------------------------------------------------------------------------ shots

    def render_all(self, works: Sequence[StoryWork], progress: Progress) -> None:
        """Render every story's ``mine`` on the cluster: largest first, one worker per shot at a time."""
        todo = [(work, job) for work in works for job in work.mine]
        if not todo:
            return
        shipper = Shipper()
        shots = []
        for work, job in todo:
            travel, files = travel_job(job, shipper)
            shots.append(_Shot(work, job, travel, project_location(work.project), files))
        shots.sort(key=lambda shot: _cost(shot.job), reverse=True)
        started = time.perf_counter()
        engines = {(w.choice_of(job), w.engine_of(job).spec()): None for w, job in todo}
        pool = self.start_pool(len(shots), list(engines))  # they load while the caches are filled
        graceful = False
        try:
            self.fill_caches(pool, shots, shipper)
            self.phases["setup"] = time.perf_counter() - started
            with progress:
                bar = progress.add_task("shots", total=len(shots))
                self.dispatch(pool, shots, lambda: progress.advance(bar))
            self.phases["shots"] = time.perf_counter() - started - self.phases["setup"]
            graceful = True
        finally:
            pool.stop(graceful)

    def dispatch(self, pool: _Pool, shots: list[_Shot], advance: Any) -> None:
        """Keep every ready worker busy with one shot until all are rendered or given up on. After a
        failure under fail-fast nothing new is sent; the shots already sent finish and are kept."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        queue = deque(shots)
        running: dict[Any, tuple[int, _Shot, float]] = {}
        idle = sorted(pool.alive - set(pool.loading.values()))
        while queue or running:
            if self.stopped:
                queue.clear()
            for index in list(idle):
                shot = _next_for(queue, index, pool.alive)
                if shot is None:
                    continue
                idle.remove(index)
                shot.attempts += 1
                shot.tried.add(index)
                work = shot.work
                call = pool.handles[index].render.remote(
                    work.choice_of(shot.job),
                    work.engine_of(shot.job).spec(),
                    shot.location,
                    shot.travel,
                    shot.files,
                )
                running[call] = (index, shot, time.perf_counter())
            if not running and not queue:
                break
            if not running and not pool.loading:
                names = ", ".join(shot.name for shot in queue)
                raise StoryreelError(f"every Ray worker died; not rendered: {names}", CLUSTER_HINT)
            (ready,), _ = ray.wait([*running, *pool.loading], num_returns=1)
            if ready in pool.loading:  # a worker has loaded its engines: it can take shots
                found = pool.loaded(ready)
                if isinstance(found, int):
                    idle.append(found)
                else:
                    self.say(f"[red]✗[/] a Ray worker cannot render: {escape(found)}")
                continue
            index, shot, sent = running.pop(ready)
            try:
                output = ray.get(ready)
            except RayTaskError as err:
                idle.append(index)
                user = _user_error(err)
                if user is not None:  # the same inputs fail the same way on every worker
                    self.give_up(shot, _describe(user))
                    advance()
                elif not self.retry(queue, shot, f"{type(err.cause).__name__}: {err.cause}"):
                    advance()
            except RayActorError as err:
                if _is_dead(err):
                    pool.alive.discard(index)
                else:
                    idle.append(index)  # Ray restarts it; the shot goes to another worker first
                if not self.retry(queue, shot, f"its worker died ({type(err).__name__})"):
                    advance()
            else:
                idle.append(index)
                self.round_trips[shot.name] = (time.perf_counter() - sent, output.seconds)
                self.save(shot, output)
                advance()

    def retry(self, queue: deque[_Shot], shot: _Shot, error: str) -> bool:
        """Queue ``shot`` again (first) unless it has used its attempts; False when given up on."""
        if shot.attempts < self.ray.attempts:
            self.say(f"[yellow]↻[/] {escape(shot.name)}: {escape(error)}; trying again")
            queue.appendleft(shot)
            return True
        self.give_up(shot, f"{error} (failed {shot.attempts} times)")
        return False

    def give_up(self, shot: _Shot, error: str) -> None:
        self.fail(shot.work.report, StoryreelError(error), shot.job.shot_id)

    def save(self, shot: _Shot, output: ShotOutput) -> None:
        """Write a returned clip into the clip store, then its record (only then does the clip count as
        current), and link both into the story's view."""
        project, job = shot.work.project, shot.job
        clip, meta = project.stored_clip_path(job.key), project.stored_meta_path(job.key)
        atomic_write_bytes(clip, output.clip)
        out = output
        record = clip_record(job, out.engine, out.versions, out.result, out.started, clip, **out.where)
        atomic_write_json(meta, record)
        link_into_view(project, job, clip, meta)
        self.shot_done(shot.work, job.shot_id, output.result.seconds, f", {output.where['host']}")


def _next_for(queue: deque[_Shot], index: int, alive: set[int]) -> _Shot | None:
    """The first queued shot that worker ``index`` has not tried yet, else one every live worker has
    tried (None: leave the rest to other workers)."""
    for shot in queue:
        if index not in shot.tried or alive <= shot.tried:
            queue.remove(shot)
            return shot
    return None


def _user_error(err: Any) -> StoryreelError | None:
    """The user error (a :class:`HintedError`) a worker raised, if that is what ``err`` carries."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, HintedError):
        return StoryreelError.from_error(cause)
    return None


def _describe(err: StoryreelError) -> str:
    return f"{err.message} (hint: {err.hint})" if err.hint else err.message


def _is_dead(err: Exception) -> bool:
    """Whether an actor error means the worker is gone for good (not being restarted by Ray)."""
    from ray.exceptions import ActorUnavailableError

    return not isinstance(err, ActorUnavailableError)
