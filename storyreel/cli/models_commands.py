"""`storyreel models tiny|download` and `storyreel doctor`: model folders and the machine's readiness."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from storyreel.cli.app import StoryreelTyper, app, console, reporter
from storyreel.cli.options import ModelOption
from storyreel.environment import environment_help

models_app = StoryreelTyper(help="Get model folders: the released weights, or a tiny random model for tests.")
app.add_typer(models_app, name="models")

DEFAULT_DOWNLOAD_DIR = Path("models/ingredients")


@models_app.command("tiny")
def models_tiny(
    directory: Annotated[
        Path, typer.Argument(help="Folder to write (replaced if present).", show_default=False)
    ],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights.")] = 0,
) -> None:
    """Write a tiny random model folder (released layout) to smoke-test the real engine on a CPU."""
    from ingredients_model.checkpoint import model_revision, write_tiny_model_folder

    path = write_tiny_model_folder(directory, seed=seed)
    console.print(f"[green]wrote[/] {escape(str(path))} (revision {model_revision(path)})", highlight=False)
    reporter.notice(
        f"try it: [bold]storyreel render STORY --engine ingredients --model {escape(str(path))}[/] "
        "(random weights: the clips are noise, the pipeline is real)"
    )


@models_app.command("download")
def models_download(
    directory: Annotated[
        Path | None,
        typer.Argument(
            help=f"Target (default: $STORYREEL_MODEL, else {DEFAULT_DOWNLOAD_DIR}).", show_default=False
        ),
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="A branch, tag or commit of the model repository.")
    ] = None,
    repo: Annotated[
        str | None, typer.Option("--repo", help="Model repository (default: feizhengcong/Ingredients).")
    ] = None,
) -> None:
    """Download the released weights with huggingface_hub (resumable; about 30 GB)."""
    from ingredients_model.checkpoint import DEFAULT_REPO_ID, download_model, model_revision
    from storyreel.engines.select import resolve_model_dir

    target = directory or resolve_model_dir(None, None)[0] or DEFAULT_DOWNLOAD_DIR
    reporter.notice(f"downloading {escape(repo or DEFAULT_REPO_ID)} into {escape(str(target))} …")
    path = download_model(target, repo_id=repo or DEFAULT_REPO_ID, revision=revision)
    shown = escape(str(path))
    console.print(f"[green]complete[/]: {shown} (revision {model_revision(path)})", highlight=False)
    reporter.notice(f"use it with [bold]--model {shown}[/] or [bold]export STORYREEL_MODEL={shown}[/]")


@app.command(epilog=environment_help("STORYREEL_MODEL"))
def doctor(model: ModelOption = None) -> None:
    """Check ffmpeg, torch/CUDA, GPU memory, the model folder and the GPU extra; say how to fix each."""
    from storyreel.doctor import FAIL, OK, run_checks
    from storyreel.engines.select import resolve_model_dir

    model_dir, source = resolve_model_dir(model, None)
    checks = run_checks(model_dir, source)
    table = Table(title="storyreel doctor", title_justify="left")
    for column in ("check", "", "details", "fix"):
        table.add_column(column, overflow="fold")
    marks = {OK: "[green]✓[/]", FAIL: "[red]✗[/]"}
    for check in checks:
        mark = marks.get(check.status, "[yellow]![/]")
        table.add_row(escape(check.name), mark, escape(check.detail), escape(check.fix))
    console.print(table)
    failed = [c.name for c in checks if c.status == FAIL]
    if failed:
        console.print(f"[red]{len(failed)} problem(s)[/]: " + ", ".join(failed), highlight=False)
        raise typer.Exit(1)
    console.print("[green]ready[/]" + (" (warnings above)" if any(c.status != OK for c in checks) else ""))
