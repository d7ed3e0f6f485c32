"""`storyreel render` and `storyreel plan`: stories → clips → reel (thin layer over storyreel.runner)."""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from storyreel.cli.app import app, console, state
from storyreel.cli.options import CacheThresholdOption, EngineOption, ModelOption, StoryArgument
from storyreel.cluster import DEFAULT_ATTEMPTS
from storyreel.errors import StoryreelError
from storyreel.locking import DEFAULT_WAIT_SECONDS

if TYPE_CHECKING:
    from storyreel.cluster import RayOptions
    from storyreel.runner import RenderOptions

_GLOB_CHARS = set("*?[")


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def expand_stories(patterns: list[str] | None) -> list[Path]:
    """Story files / project folders from the arguments; glob patterns (quoted or not) are expanded."""
    if not patterns:
        return [Path("story.yaml")]
    paths: list[Path] = []
    for pattern in patterns:
        if _GLOB_CHARS & set(pattern) and not Path(pattern).exists():
            matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
            if not matches:
                raise StoryreelError(
                    f"no story matches {pattern!r}", hint="check the pattern, e.g. 'stories/*/story.yaml'"
                )
            paths += [Path(m) for m in matches]
        else:
            paths.append(Path(pattern))
    return paths


def split_ids(values: list[str] | None) -> list[str] | None:
    """``--only a,b --only c`` → ``[a, b, c]``."""
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_command(processes: int, render_args: list[str], gpus_visible: int) -> list[str]:
    """The ``accelerate launch`` command that runs ``storyreel render`` once per GPU (or CPU process)."""
    if processes < 1:
        raise StoryreelError("--gpus must be at least 1")
    if 0 < gpus_visible < processes:
        raise StoryreelError(
            f"--gpus {processes} asked for, but only {gpus_visible} CUDA GPU(s) are visible",
            hint=f"use --gpus {gpus_visible}, or check CUDA_VISIBLE_DEVICES",
        )
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if processes > 1:  # torchrun-style workers; without CUDA, PartialState falls back to gloo on the CPU
        launch += ["--multi_gpu", "--main_process_port", str(_free_port())]
    return [*launch, "-m", "storyreel", *(["--debug"] if state.debug else []), "render", *render_args]


def render_args(stories: list[str], options: RenderOptions) -> list[str]:
    """The ``storyreel render`` arguments that ask each launched process for exactly ``options``."""
    args = [*stories]
    if options.engine:
        args += ["--engine", options.engine]
    if options.model:
        args += ["--model", str(Path(options.model).absolute())]
    args += ["--force"] if options.force else []
    for shot_id in options.only or []:
        args += ["--only", shot_id]
    args += ["--memory", options.memory, "--wait", str(options.wait)]
    if options.cache_threshold is not None:
        args += ["--cache-threshold", str(options.cache_threshold)]
    args += ["--no-reel"] if not options.reel else []
    return args


def ray_options(
    ray: bool, address: str | None, cpus_per_worker: float | None, attempts: int
) -> RayOptions | None:
    """The Ray options of a render (None without ``--ray``; the other ``--ray-*`` options need it)."""
    from storyreel.cluster import RayOptions

    if ray:
        return RayOptions(address, cpus_per_worker, attempts)
    if address is not None or cpus_per_worker is not None or attempts != DEFAULT_ATTEMPTS:
        raise StoryreelError("--ray-address, --ray-cpus-per-worker and --ray-attempts need --ray")
    return None


RayOption = Annotated[
    bool, typer.Option("--ray", help="Render on a Ray cluster: one worker per GPU; see README, Cluster.")
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="The Ray cluster (HEAD:6379); default $RAY_ADDRESS, else a new local Ray.",
        show_default=False,
    ),
]
RayCpusOption = Annotated[
    float | None,
    typer.Option(
        "--ray-cpus-per-worker",
        help="CPUs per Ray worker: the worker size on a CPU-only cluster (default 1).",
    ),
]
RayAttemptsOption = Annotated[
    int, typer.Option("--ray-attempts", min=1, help="Tries per shot on Ray before it is reported failed.")
]


@app.command()
def render(
    stories: Annotated[
        list[str] | None,
        typer.Argument(
            help="Story files or project folders; globs like 'stories/*/story.yaml'.", show_default=False
        ),
    ] = None,
    engine: EngineOption = None,
    model: ModelOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Render every shot again, even current ones.")
    ] = False,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Render only these shot ids (repeat or a,b,c).")
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option("--gpus", help="Run N processes with accelerate launch, one per GPU; shots are split."),
    ] = None,
    memory: Annotated[
        str, typer.Option("--memory", help="auto | none | model_offload | group_offload.")
    ] = "auto",
    cache_threshold: CacheThresholdOption = None,
    no_reel: Annotated[
        bool, typer.Option("--no-reel", help="Render clips only; do not assemble the reel.")
    ] = False,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for another render of the project.")
    ] = DEFAULT_WAIT_SECONDS,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    ray_cpus_per_worker: RayCpusOption = None,
    ray_attempts: RayAttemptsOption = DEFAULT_ATTEMPTS,
    worker: Annotated[bool, typer.Option("--worker", hidden=True)] = False,
    lease: Annotated[float | None, typer.Option("--lease", hidden=True)] = None,
) -> None:
    """Render stories: every shot without a current clip, then the reel and the review page."""
    from storyreel.runner import RenderOptions, render_stories

    if worker or lease is not None:
        raise StoryreelError(
            "--worker (independent workers on a shared folder) was replaced by Ray",
            hint="start one render for the whole batch with --ray on a Ray cluster (`ray start`); it needs "
            "no shared folder (README, section Cluster). --gpus N still renders on one machine's GPUs.",
        )
    if ray and gpus is not None:
        raise StoryreelError("--ray and --gpus cannot be combined", "--ray uses every GPU of the Ray cluster")
    options = RenderOptions(
        engine=engine,
        model=model,
        force=force,
        only=split_ids(only),
        memory=memory,
        cache_threshold=cache_threshold,
        reel=not no_reel,
        wait=wait,
        ray=ray_options(ray, ray_address, ray_cpus_per_worker, ray_attempts),
    )
    if gpus is not None and int(os.environ.get("WORLD_SIZE", "1")) <= 1 and gpus > 1:
        import torch

        visible = torch.cuda.device_count()
        command = accelerate_command(gpus, render_args(stories or [], options), visible)
        if visible == 0:
            console.print(f"no CUDA GPU: running {gpus} CPU processes instead", highlight=False)
        console.print("[dim]" + escape(" ".join(command[1:])) + "[/]", highlight=False)
        raise typer.Exit(subprocess.call(command))
    reports = render_stories(expand_stories(stories), options, console)
    for report in reports:
        if not report.main_process:
            continue
        done = f"{len(report.rendered)} rendered, {len(report.skipped)} already current"
        if report.failed:
            done += f", {len(report.failed)} failed"
        console.print(f"[bold]{escape(_shown(report.story_path))}[/]: {done}", highlight=False)
        for shot_id, error in report.failed.items():
            console.print(f"  [red]failed[/] {escape(shot_id)}: {escape(error)}", highlight=False)
        if report.reel is not None:
            console.print(f"  reel:   [green]{escape(_shown(report.reel))}[/]", highlight=False)
        if report.review is not None:
            console.print(f"  review: [green]{escape(_shown(report.review))}[/]", highlight=False)
        if report.reel_note:
            console.print(f"  [dim]{escape(report.reel_note)}[/]", highlight=False)
    if any(report.failed for report in reports):
        raise typer.Exit(1)


@app.command()
def plan(
    story: StoryArgument = Path("story.yaml"),
    engine: EngineOption = None,
    model: ModelOption = None,
    cache_threshold: CacheThresholdOption = None,
) -> None:
    """Show the render jobs of a story and which are done, stale or still to do."""
    from storyreel.engines.select import choose_engine, make_engine, resolve_model_dir
    from storyreel.plan import job_status, plan_story
    from storyreel.project import Project
    from storyreel.story import load_story

    loaded = load_story(story)
    choice = choose_engine(engine or loaded.defaults.engine, *resolve_model_dir(model, loaded))
    spec = make_engine(choice).spec()
    project = Project.from_story(loaded)
    jobs = plan_story(loaded, spec, cache_threshold=cache_threshold)
    console.print(f"engine: [bold]{choice.name}[/] — {escape(choice.reason)}", highlight=False)
    first = jobs[0]
    title = f"{loaded.title}: {first.engine}, {first.width}x{first.height} at {first.fps} fps"
    table = Table(title=escape(title), title_justify="left")
    for column in ("shot", "cast", "frames", "seed", "key", "status"):
        right = column in ("frames", "seed")
        table.add_column(column, justify="right" if right else "left", no_wrap=column != "cast")
    colours = {"done": "green", "stale": "yellow", "todo": "red"}
    counts = dict.fromkeys(colours, 0)
    for job in jobs:
        status = job_status(job, project)
        counts[status] += 1
        table.add_row(
            escape(job.shot_id),
            escape(", ".join(job.cast)) or "-",
            str(job.frames),
            str(job.seed),
            job.key[:12],
            f"[{colours[status]}]{status}[/]",
        )
    console.print(table)
    console.print(", ".join(f"{n} {status}" for status, n in counts.items()), highlight=False)
