"""`storyreel models tiny|download` and `storyreel doctor`: model folders and the machine's readiness."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ingredients_model.released import DOWNLOAD_GB
from storyreel.cli.app import StoryreelTyper, app, console, reporter
from storyreel.cli.options import ModelOption, WanModelOption
from storyreel.environment import environment_help
from storyreel.errors import StoryreelError

models_app = StoryreelTyper(help="Get model folders: the released weights, or a tiny random model for tests.")
app.add_typer(models_app, name="models")

DEFAULT_DOWNLOAD_DIR = Path("models/ingredients")


@models_app.command("tiny")
def models_tiny(
    directory: Annotated[
        Path, typer.Argument(help="Folder to write (replaced if present).", show_default=False)
    ],
    engine: Annotated[
        str, typer.Option("--engine", help="Which model: ingredients | wan-vace.")
    ] = "ingredients",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights.")] = 0,
) -> None:
    """Write a tiny random model folder (released layout) to smoke-test the real engine on a CPU."""
    if engine == "ingredients":
        from ingredients_model.checkpoint import model_revision, write_tiny_model_folder

        path, option = write_tiny_model_folder(directory, seed=seed), "--model"
    elif engine == "wan-vace":
        from storyreel.models.wan_vace import model_revision
        from storyreel.models.wan_vace_tiny import write_tiny_folder

        path, option = write_tiny_folder(directory, seed=seed), "--wan-model"
    else:
        raise StoryreelError(
            f"no tiny model for engine {engine!r}", hint="use --engine ingredients or wan-vace"
        )
    console.print(f"[green]wrote[/] {escape(str(path))} (revision {model_revision(path)})", highlight=False)
    reporter.notice(
        f"try it: [bold]storyreel render STORY --engine {engine} {option} {escape(str(path))}[/] "
        "(random weights: the clips are noise, the pipeline is real)"
    )


@models_app.command(
    "download",
    help=f"Download released weights with huggingface_hub (resumable): Ingredients (about {DOWNLOAD_GB} GB) "
    "or Wan2.1-VACE 1.3B / 14B in diffusers layout.",
    epilog=environment_help("STORYREEL_MODEL", "STORYREEL_WAN_MODEL"),
)
def models_download(
    what: Annotated[
        str | None,
        typer.Argument(
            help="ingredients (default), wan-vace-1.3b or wan-vace-14b; or directly the target folder "
            "(Ingredients).",
            show_default=False,
        ),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Argument(
            help=f"Target (default: $STORYREEL_MODEL, else {DEFAULT_DOWNLOAD_DIR}; for Wan VACE: "
            "$STORYREEL_WAN_MODEL, else models/<name>).",
            show_default=False,
        ),
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="A branch, tag or commit of the model repository.")
    ] = None,
    repo: Annotated[
        str | None, typer.Option("--repo", help="Model repository (default: the released one).")
    ] = None,
) -> None:
    from storyreel.models.wan_vace import VARIANTS

    if what in VARIANTS:
        _download_wan(what, directory, revision, repo)
        return
    if what is not None and what != "ingredients":
        if directory is not None:
            raise StoryreelError(
                f"unknown model {what!r}", hint="use ingredients, " + ", ".join(VARIANTS) + " (then a folder)"
            )
        directory = Path(what)
    _download_ingredients(directory, revision, repo)


def _download_ingredients(directory: Path | None, revision: str | None, repo: str | None) -> None:
    from ingredients_model.checkpoint import DEFAULT_REPO_ID, download_model, model_revision
    from storyreel.engines.select import resolve_model_dir

    target = directory or resolve_model_dir(None, None)[0] or DEFAULT_DOWNLOAD_DIR
    reporter.notice(f"downloading {escape(repo or DEFAULT_REPO_ID)} into {escape(str(target))} …")
    path = download_model(target, repo_id=repo or DEFAULT_REPO_ID, revision=revision)
    shown = escape(str(path))
    console.print(f"[green]complete[/]: {shown} (revision {model_revision(path)})", highlight=False)
    reporter.notice(f"use it with [bold]--model {shown}[/] or [bold]export STORYREEL_MODEL={shown}[/]")


def _download_wan(variant: str, directory: Path | None, revision: str | None, repo: str | None) -> None:
    from storyreel.engines.select import resolve_wan_model_dir
    from storyreel.models.wan_vace import VARIANTS, download, model_revision

    target = directory or resolve_wan_model_dir(None, None)[0] or Path("models") / variant
    reporter.notice(f"downloading {escape(repo or VARIANTS[variant].repo_id)} into {escape(str(target))} …")
    path = download(variant, target, revision=revision, repo_id=repo)
    shown = escape(str(path))
    console.print(f"[green]complete[/]: {shown} (revision {model_revision(path)})", highlight=False)
    reporter.notice(
        f"use it with [bold]--wan-model {shown}[/] or [bold]export STORYREEL_WAN_MODEL={shown}[/]"
    )


DOCTOR_HELP = (
    "Check ffmpeg, torch/CUDA, GPU memory, the model folders and the [gpu] extra; say how to fix each."
)


# help texts are rich markup, where "[gpu]" would be a tag: escaped, it shows as written
@app.command(help=escape(DOCTOR_HELP), epilog=environment_help("STORYREEL_MODEL", "STORYREEL_WAN_MODEL"))
def doctor(model: ModelOption = None, wan_model: WanModelOption = None) -> None:
    """See :data:`DOCTOR_HELP`."""
    from storyreel.doctor import FAIL, OK, run_checks
    from storyreel.engines.select import resolve_model_dir, resolve_wan_model_dir

    checks = run_checks(*resolve_model_dir(model, None), *resolve_wan_model_dir(wan_model, None))
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
