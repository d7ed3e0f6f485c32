"""storyreel from Python: load and validate stories, plan, render, evaluate and read the results.

The same functions the `storyreel` commands run, for scripts (e.g. a campaign of many stories)::

    from storyreel import api

    story = api.load_story("demo/story.yaml")          # raises StoryValidationError listing every problem
    checked = api.validate("demo")                     # never raises for a bad story: .ok, .problems
    print(api.plan(story).counts)    # {'done': 0, 'stored': 0, 'stale': 0, 'damaged': 0, 'todo': 4}
    batch = api.render(["demo"], engine="preview", keep_going=True)
    print(batch.ok, batch.totals["shots"])             # True {'rendered': 4, 'reused': 0, 'current': 0, ...}
    print(api.results("demo").reel)                    # PosixPath('.../demo/reel.mp4')

``init_project(folder, example=False)`` makes a project, as ``storyreel init`` does.

Every result has ``to_json()``: the very documents ``storyreel … --json`` prints (without the ``schema``
field). Paths may be a story file or its project folder. Functions that load a story take
``cast_library=`` (``--cast-library``: the cast library, over the story's ``cast_library:`` and
``$STORYREEL_CAST``); for :func:`render` it is a :class:`~storyreel.runner.RenderOptions` field.
Progress and notices go to stderr; pass ``console=`` (a rich console or a
:class:`~storyreel.reporting.Reporter`) to send them elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console

from storyreel.plan import RenderJob, job_status, read_clip_meta
from storyreel.project import Project, init_project
from storyreel.reporting import Reporter
from storyreel.runner import RenderOptions, StoryReport, batch_totals, render_stories
from storyreel.story import Problem, Story, StoryValidationError
from storyreel.story import load_story as _load_story

__all__ = [
    "Batch",
    "Plan",
    "PlannedJob",
    "RenderOptions",
    "Results",
    "StoryReport",
    "Validation",
    "evaluate",
    "init_project",
    "load_story",
    "plan",
    "render",
    "results",
    "validate",
]

StoryLike = Story | Path | str


def _path(story: Path | str) -> Path:
    return Project.find(Path(story)).story_path


def _story(story: StoryLike, cast_library: Path | str | None = None) -> Story:
    return story if isinstance(story, Story) else load_story(story, cast_library=cast_library)


def _folder(path: Path | str | None) -> Path | None:
    return Path(path) if path is not None else None


def load_story(
    path: Path | str, variables: Mapping[str, str] | None = None, *, cast_library: Path | str | None = None
) -> Story:
    """The story in ``path`` (a story file or a project folder), validated; ``variables`` override its
    ``vars:`` (as ``--set name=value``).

    Raises :class:`~storyreel.story.StoryValidationError` (its ``problems`` list every problem) or
    :class:`~storyreel.errors.StoryreelError` when the file cannot be read.
    """
    return _load_story(_path(path), variables, cast_library=_folder(cast_library))


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "file": str(problem.file),
        "line": problem.line,
        "column": problem.column,
        "field": problem.path or None,
        "message": problem.message,
        "hint": problem.hint,
    }


@dataclass
class Validation:
    """The outcome of :func:`validate`: the story when valid, else its problems."""

    path: Path
    story: Story | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.story is not None

    @property
    def warnings(self) -> list[Problem]:
        return self.story.warnings if self.story is not None else []

    def to_json(self) -> dict[str, Any]:
        story = self.story
        entry: dict[str, Any] = {"valid": self.ok, "title": None, "seconds": None, "cast": [], "shots": []}
        if story is not None:
            entry["title"] = story.title
            entry["seconds"] = sum(shot.seconds or 0.0 for shot in story.shots)
            entry["use"] = list(story.use)
            entry["cast_library"] = str(story.library.root) if story.library is not None else None
            entry["cast"] = [
                {"name": name, "photos": [str(p) for p in member.photos], "face": member.face,
                 "description": member.description,
                 "library": member.from_library.name if member.from_library is not None else None}
                for name, member in story.cast.items()
            ]  # fmt: skip
            entry["shots"] = [
                {"id": shot.id, "cast": list(shot.cast or []), "seconds": shot.seconds, "frames": shot.frames,
                 "seed": shot.seed, "transition": shot.transition.type, "caption": shot.caption}
                for shot in story.shots
            ]  # fmt: skip
        entry["problems"] = [_problem_json(p) for p in self.problems]
        entry["warnings"] = [_problem_json(w) for w in self.warnings]
        return entry


def validate(
    path: Path | str, variables: Mapping[str, str] | None = None, *, cast_library: Path | str | None = None
) -> Validation:
    """Load ``path`` (with ``variables``, as ``--set``) and report its problems instead of raising for
    them (a missing file still raises)."""
    story_path = _path(path)
    try:
        return Validation(story_path, _load_story(story_path, variables, cast_library=_folder(cast_library)))
    except StoryValidationError as err:
        return Validation(story_path, None, list(err.problems))


@dataclass
class PlannedJob:
    """One render job and its state on disk: ``done``, ``stored`` (in the clip store: linked, not
    rendered), ``stale``, ``damaged`` or ``todo``."""

    job: RenderJob
    status: str

    def to_json(self) -> dict[str, Any]:
        job = self.job
        return {
            "shot": job.shot_id,
            "engine": job.engine,
            "cast": list(job.cast),
            "frames": job.frames,
            "generated_frames": job.generated_frames,
            "fps": job.fps,
            "width": job.width,
            "height": job.height,
            "seed": job.seed,
            "key": job.key,
            "status": self.status,
        }


@dataclass
class Plan:
    """The jobs of one story for the engines that would render them (``engine``: their names, comma-separated;
    each job names its own)."""

    story: Story
    engine: str
    engine_reason: str
    jobs: list[PlannedJob]

    @property
    def counts(self) -> dict[str, int]:
        counts = {"done": 0, "stored": 0, "stale": 0, "damaged": 0, "todo": 0}
        for entry in self.jobs:
            counts[entry.status] = counts.get(entry.status, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.story.title,
            "engine": self.engine,
            "engine_reason": self.engine_reason,
            "jobs": [entry.to_json() for entry in self.jobs],
            "counts": self.counts,
        }


def plan(
    story: StoryLike,
    *,
    engine: str | None = None,
    model: Path | str | None = None,
    cache_threshold: float | None = None,
    only: Sequence[str] | None = None,
    wan_model: Path | str | None = None,
    cast_library: Path | str | None = None,
    cfg_routing: str | None = None,
    cache: Any = None,
) -> Plan:
    """What ``render`` would do: the engine it would choose for each shot and each job with its status.
    ``cfg_routing``, ``cache`` (a setting as in story.yaml) and ``cache_threshold`` apply to every shot, as
    the command-line options do."""
    from storyreel.engines.select import choose_shot_engines, make_engine
    from storyreel.plan import Overrides, plan_story

    loaded = _story(story, cast_library)
    choices = choose_shot_engines(
        loaded,
        engine,
        Path(model) if model is not None else None,
        Path(wan_model) if wan_model is not None else None,
    )
    specs = {}
    for choice in choices.values():
        specs.setdefault(choice.name, make_engine(choice).spec())
    overrides = Overrides.given(cfg_routing, cache, cache_threshold)
    jobs = plan_story(loaded, lambda shot: specs[choices[shot.id].name], only=only, overrides=overrides)
    project = Project.from_story(loaded)
    planned = [PlannedJob(job, job_status(job, project)) for job in jobs]
    reasons = {choice.name: choice.reason for choice in choices.values()}
    return Plan(loaded, ", ".join(reasons), "; ".join(reasons.values()), planned)


@dataclass
class Batch:
    """What :func:`render` did: one report per story (``status``: ok, failed, not_run) and totals."""

    reports: list[StoryReport]
    totals: dict[str, Any]

    @property
    def ok(self) -> bool:
        return all(report.status == "ok" for report in self.reports)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "stories": [r.to_json() for r in self.reports], "total": self.totals}


def render(
    stories: Sequence[Path | str],
    options: RenderOptions | None = None,
    *,
    console: Reporter | Console | None = None,
    **overrides: Any,
) -> Batch:
    """Render ``stories`` in one batch (engines load once): the shots without a current clip, then each
    reel and review page.

    ``options`` and/or keyword ``overrides`` are :class:`~storyreel.runner.RenderOptions` fields
    (``engine``, ``model``, ``force``, ``only``, ``keep_going``, …). User errors do not raise: they are
    in each report's ``failures``; check :attr:`Batch.ok`.
    """
    import time

    known = {f.name for f in fields(RenderOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown render option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    base = options or RenderOptions()
    chosen = RenderOptions(**{**{f.name: getattr(base, f.name) for f in fields(RenderOptions)}, **overrides})
    started = time.perf_counter()
    reports = render_stories([Path(s) for s in stories], chosen, console)
    return Batch(reports, batch_totals(reports, time.perf_counter() - started))


@dataclass
class ClipResult:
    """One shot's clip on disk and the record written next to it (None when missing)."""

    path: Path | None
    record: dict[str, Any] | None


@dataclass
class Results:
    """A story's outputs on disk: reels (one per format; ``reel`` is the first), review page, clips and
    their records, eval results."""

    story: Story
    reel: Path | None
    review: Path | None
    clips: dict[str, ClipResult]
    reel_record: dict[str, Any] | None
    eval: dict[str, Any] | None
    reels: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def shown(path: Path | None) -> str | None:
            return str(path) if path is not None else None

        return {
            "story": str(self.story.path),
            "reel": shown(self.reel),
            "reels": [str(path) for path in self.reels],
            "review": shown(self.review),
            "clips": {shot: {"path": shown(c.path), "record": c.record} for shot, c in self.clips.items()},
            "reel_record": self.reel_record,
            "eval": self.eval,
        }


def results(story: StoryLike, *, cast_library: Path | str | None = None) -> Results:
    """What is on disk for ``story``: nothing is rendered or checked against the current story."""
    from storyreel.evaluate import read_eval
    from storyreel.reel_record import read_reel_record

    loaded = _story(story, cast_library)
    project = Project.from_story(loaded)

    def existing(path: Path) -> Path | None:
        return path if path.is_file() else None

    clips = {
        shot.id: ClipResult(existing(project.clip_path(shot.id)), read_clip_meta(project, shot.id))
        for shot in loaded.shots
    }
    reels = [project.root / fmt.file for fmt in loaded.output.reel_formats]
    return Results(
        story=loaded,
        reels=[path for path in reels if path.is_file()],
        reel=existing(reels[0]),
        review=existing(project.review_path),
        clips=clips,
        reel_record=read_reel_record(project),
        eval=read_eval(project),
    )


def evaluate(
    story: StoryLike, *, cast_library: Path | str | None = None, **options: Any
) -> tuple[dict[str, Any], Path, Path]:
    """Evaluate the rendered shots (:func:`storyreel.evaluate.evaluate_story`'s keyword ``options``:
    ``backend``, ``model_dir``, ``clip_dir``, ``frames``, ``threshold``, ``device``, ``protocol``,
    ``face_models``, ``progress``), write
    ``renders/eval.json`` and refresh the review page; returns (report, eval.json, review page)."""
    from storyreel.evaluate import evaluate_story, write_eval
    from storyreel.outputs import refresh_review

    loaded = _story(story, cast_library)
    project = Project.from_story(loaded)
    report = evaluate_story(loaded, project, **options)
    path = write_eval(project, report)
    return report, path, refresh_review(loaded, project)
