"""`storyreel render` and `storyreel plan`: stories → clips → reel (thin layer over storyreel.runner)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from storyreel.cli.app import app, console, reporter, state
from storyreel.cli.batch import each_story, exit_for, print_story_count
from storyreel.cli.console import emit_json
from storyreel.cli.options import (
    CacheOption,
    CacheThresholdOption,
    CastLibraryOption,
    CfgRoutingOption,
    EngineOption,
    JsonOption,
    KeepGoingOption,
    MemoryOption,
    ModelOption,
    SetOption,
    StoriesArgument,
    WanModelOption,
    expand_stories,
    keep_going_for,
    single_variant,
    variables,
)
from storyreel.cluster import DEFAULT_ATTEMPTS
from storyreel.environment import environment_help
from storyreel.errors import StoryreelError
from storyreel.locking import DEFAULT_WAIT_SECONDS
from storyreel.reporting import QUIET, VERBOSE, plural, shown_path
from storyreel.step_cache import parse_cache_option

if TYPE_CHECKING:
    from storyreel.cluster import RayOptions
    from storyreel.runner import RenderOptions, StoryReport


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
    shared = ["--debug"] if state.debug else []
    shared += {QUIET: ["--quiet"], VERBOSE: ["--verbose"]}.get(state.verbosity, [])
    shared += ["--json"] if state.json else []
    return [*launch, "-m", "storyreel", "render", *render_args, *shared]


def render_args(stories: list[str], options: RenderOptions) -> list[str]:
    """The ``storyreel render`` arguments that ask each launched process for exactly ``options``."""
    args = [*stories]
    if options.engine:
        args += ["--engine", options.engine]
    if options.model:
        args += ["--model", str(Path(options.model).absolute())]
    if options.wan_model:
        args += ["--wan-model", str(Path(options.wan_model).absolute())]
    if options.cast_library:
        args += ["--cast-library", str(Path(options.cast_library).absolute())]
    args += ["--force"] if options.force else []
    for shot_id in options.only or []:
        args += ["--only", shot_id]
    args += ["--memory", options.memory, "--wait", str(options.wait)]
    if options.cfg_routing is not None:
        args += ["--cfg-routing", options.cfg_routing]
    if options.cache is not None:
        args += ["--cache", json.dumps(options.cache)]  # JSON is YAML flow style
    if options.cache_threshold is not None:
        args += ["--cache-threshold", str(options.cache_threshold)]
    args += ["--parallel", options.parallel] if options.parallel != "shots" else []
    args += ["--no-reel"] if not options.reel else []
    args += ["--keep-going"] if options.keep_going else ["--fail-fast"]
    for name, values in options.variables.items():
        args += [item for value in values for item in ("--set", f"{name}={value}")]
    if options.campaign is not None:
        args += ["--campaign", str(Path(options.campaign).absolute())]
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


ParallelOption = Annotated[
    str,
    typer.Option(
        "--parallel",
        help="With --gpus N: shots (spread the shots over the GPUs) or shot (render each shot on all N GPUs "
        "together: context parallelism, the Ingredients model only).",
    ),
]
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


@app.command(
    epilog=environment_help("STORYREEL_MODEL", "STORYREEL_WAN_MODEL", "STORYREEL_CAST", "STORYREEL_FONT")
)
def render(
    stories: StoriesArgument = None,
    engine: EngineOption = None,
    model: ModelOption = None,
    wan_model: WanModelOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Render every shot again, even current ones.")
    ] = False,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Render only these shot ids (repeat or a,b,c).")
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option("--gpus", help="Run N processes with accelerate launch, one per GPU (see --parallel)."),
    ] = None,
    parallel: ParallelOption = "shots",
    memory: MemoryOption = "auto",
    cfg_routing: CfgRoutingOption = None,
    cache: CacheOption = None,
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
    cast_library: CastLibraryOption = None,
    worker: Annotated[bool, typer.Option("--worker", hidden=True)] = False,
    lease: Annotated[float | None, typer.Option("--lease", hidden=True)] = None,
    keep_going: KeepGoingOption = None,
    json_: JsonOption = False,
    set_: SetOption = None,
    campaign: Annotated[
        Path | None,
        typer.Option(
            "--campaign",
            help="Write the campaign page here (default: campaign.html beside the stories, for batches "
            "of several stories or variants).",
        ),
    ] = None,
) -> None:
    """Render stories: every shot without a current clip, then the reels and the review page.

    Every story ends with a status and the batch with a total (stories, shots rendered / current /
    failed, wall time); the exit code is 1 when any story failed."""
    from storyreel.runner import (
        RenderOptions,
        batch_totals,
        check_shot_parallel,
        load_stories,
        render_stories,
    )

    started = time.perf_counter()
    if worker or lease is not None:
        raise StoryreelError(
            "--worker (independent workers on a shared folder) was replaced by Ray",
            hint="start one render for the whole batch with --ray on a Ray cluster (`ray start`); it needs "
            "no shared folder (README, section Cluster). --gpus N still renders on one machine's GPUs.",
        )
    if ray and gpus is not None:
        raise StoryreelError("--ray and --gpus cannot be combined", "--ray uses every GPU of the Ray cluster")
    paths = expand_stories(stories)
    assigned = variables(set_)
    count = 1
    for values in assigned.values():
        count *= len(values)
    options = RenderOptions(
        engine=engine,
        model=model,
        wan_model=wan_model,
        force=force,
        only=split_ids(only),
        memory=memory,
        cfg_routing=cfg_routing,
        cache=parse_cache_option(cache) if cache is not None else None,
        cache_threshold=cache_threshold,
        parallel=parallel,
        reel=not no_reel,
        wait=wait,
        cast_library=cast_library,
        ray=ray_options(ray, ray_address, ray_cpus_per_worker, ray_attempts),
        keep_going=keep_going_for(keep_going, paths, count),
        variables=assigned,
        campaign=campaign,
    )
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if options.shot_parallel and not launched:
        if gpus is None or gpus < 2:
            raise StoryreelError(
                "--parallel shot renders each shot on several GPUs together: give their number with --gpus N",
                hint="for example `storyreel render story.yaml --gpus 2 --parallel shot`",
            )
        check_shot_parallel(load_stories(paths, assigned, cast_library=cast_library), options)
    if gpus is not None and not launched and gpus > 1:
        import torch

        visible = torch.cuda.device_count()
        command = accelerate_command(gpus, render_args(stories or [], options), visible)
        if visible == 0:
            reporter.notice(f"no CUDA GPU: running {gpus} CPU processes instead")
        reporter.notice("[dim]" + escape(" ".join(command[1:])) + "[/]")
        raise typer.Exit(subprocess.call(command))
    reports = render_stories(paths, options, reporter)
    if not all(report.main_process for report in reports):
        return  # a launched process other than the first: process 0 reports for all
    totals = batch_totals(reports, time.perf_counter() - started)
    print_reports(reports, totals)
    if json_:
        ok = all(report.status == "ok" for report in reports)
        emit_json("render", {"ok": ok, "stories": [r.to_json() for r in reports], "total": totals})
    if any(report.status != "ok" for report in reports):
        raise typer.Exit(1)


def print_reports(reports: list[StoryReport], totals: dict[str, Any]) -> None:
    """Each story's status, clips and outputs, then the batch total (results: stdout)."""
    colours = {"ok": "green", "failed": "red", "not_run": "yellow"}
    for report in reports:
        label = escape(report.label)
        status = f"[{colours[report.status]}]{report.status.replace('_', ' ')}[/]"
        done = f"{len(report.rendered)} rendered, {len(report.skipped)} already current"
        if report.reused:
            done += f", {len(report.reused)} reused from the clip store"
        if report.failed_shots:
            done += f", {len(report.failed_shots)} failed ({escape(', '.join(report.failed_shots))})"
        console.print(f"[bold]{label}[/]: {status} — {done}", highlight=False)
        for failure in report.failures:
            line = failure.describe(report.label)
            console.print(f"  [red]{escape(line)}[/]", highlight=False)
        for reel in report.reels or ([report.reel] if report.reel else []):
            console.print(f"  reel:   [green]{escape(shown_path(reel))}[/]", highlight=False)
        if report.review is not None:
            console.print(f"  review: [green]{escape(shown_path(report.review))}[/]", highlight=False)
        if report.reel_note:
            console.print(f"  [dim]{escape(report.reel_note)}[/]", highlight=False)
        for note in report.notes:
            console.print(f"  [yellow]note:[/] {escape(note)}", highlight=False)
    for page in sorted({report.campaign for report in reports if report.campaign is not None}):
        console.print(f"campaign: [green]{escape(shown_path(page))}[/]", highlight=False)
    shots = totals["shots"]
    statuses = ("ok", "failed", "not_run")
    by_status = ", ".join(f"{totals[s]} {s.replace('_', ' ')}" for s in statuses if totals[s])
    stories = plural(totals["stories"], "story", "stories")
    console.print(
        f"[bold]total[/]: {stories} ({by_status}); shots: {shots['rendered']} rendered, "
        f"{shots['reused']} reused, {shots['current']} current, {shots['failed']} failed; "
        f"{totals['wall_seconds']:.1f} s",
        highlight=False,
    )


@app.command(epilog=environment_help("STORYREEL_MODEL", "STORYREEL_WAN_MODEL", "STORYREEL_CAST"))
def plan(
    stories: StoriesArgument = None,
    engine: EngineOption = None,
    model: ModelOption = None,
    wan_model: WanModelOption = None,
    cfg_routing: CfgRoutingOption = None,
    cache: CacheOption = None,
    cache_threshold: CacheThresholdOption = None,
    cast_library: CastLibraryOption = None,
    json_: JsonOption = False,
    set_: SetOption = None,
) -> None:
    """Show the render jobs of stories and which are done, stored (another story or variant rendered
    them: linked, not rendered), stale, damaged or still to do."""
    from storyreel.api import load_story
    from storyreel.api import plan as plan_story

    paths = expand_stories(stories)
    values = single_variant(set_)

    def one(path: Path) -> Any:
        story = load_story(path, values, cast_library=cast_library)
        planned = plan_story(
            story,
            engine=engine,
            model=model,
            wan_model=wan_model,
            cfg_routing=cfg_routing,
            cache=parse_cache_option(cache) if cache is not None else None,
            cache_threshold=cache_threshold,
        )
        print_plan(planned)
        return planned

    outcomes = each_story(paths, one)
    print_story_count(outcomes)
    if json_:
        entries = [{**o.to_json(), **(o.value.to_json() if o.value else {})} for o in outcomes]
        emit_json("plan", {"ok": all(o.status == "ok" for o in outcomes), "stories": entries})
    exit_for(outcomes)


def print_plan(planned: Any) -> None:  # planned: storyreel.api.Plan
    """The plan of one story as a table, then its counts (results: stdout)."""
    for warning in planned.story.consent_warnings:
        reporter.warning(str(warning))
    reporter.notice(f"engine: [bold]{planned.engine}[/] — {escape(planned.engine_reason)}")
    sizes = dict.fromkeys(
        f"{e.job.engine}, {e.job.width}x{e.job.height} at {e.job.fps} fps" for e in planned.jobs
    )
    title = f"{planned.story.title}: {'; '.join(sizes)}"
    table = Table(title=escape(title), title_justify="left")
    for column in ("shot", "engine", "cast", "frames", "seed", "key", "status"):
        right = column in ("frames", "seed")
        table.add_column(column, justify="right" if right else "left", no_wrap=column != "cast")
    colours = {"done": "green", "stored": "cyan", "stale": "yellow", "damaged": "magenta", "todo": "red"}
    for entry in planned.jobs:
        job = entry.job
        colour = colours.get(entry.status, "red")
        table.add_row(
            escape(job.shot_id),
            job.engine,
            escape(", ".join(job.cast)) or "-",
            str(job.frames)
            if job.generated_frames == job.frames
            else f"{job.frames} of {job.generated_frames}",
            str(job.seed),
            job.key[:12],
            f"[{colour}]{entry.status}[/]",
        )
    console.print(table)
    counts = planned.counts
    shown = [f"{n} {status}" for status, n in counts.items() if n or status != "damaged"]
    console.print(", ".join(shown), highlight=False)
    if counts.get("damaged"):
        reporter.notice(
            "damaged: the clip does not match its record (size, hash or header); "
            "`storyreel render` renders it again"
        )
