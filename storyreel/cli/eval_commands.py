"""`storyreel` commands: eval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from storyreel.cli.app import app, console, console_err
from storyreel.cli.options import ModelOption, StoryArgument
from storyreel.evaluate import DEFAULT_FRAMES


def _num(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def _flags(flags: list[str]) -> str:
    return f"[red]{', '.join(flags)}[/]" if flags else "[green]ok[/]"


def shot_table(report: dict[str, Any]) -> Table:
    """One row per shot: faces found, the paper's face similarity, CLIPScore, flags."""
    table = Table(title="Shots", title_justify="left")
    for column in ("shot", "cast", "faces/frame", "face sim", "CLIPScore", "flags"):
        table.add_column(
            column, justify="right" if column in ("faces/frame", "face sim", "CLIPScore") else "left"
        )
    for shot_id, shot in report["shots"].items():
        if shot["status"] != "ok":
            note = "not rendered" if shot["status"] == "not_rendered" else "stale: re-render"
            table.add_row(shot_id, ", ".join(shot["cast"]), "–", "–", "–", f"[yellow]{note}[/]")
            continue
        det = shot["detections"]
        table.add_row(
            shot_id,
            ", ".join(shot["cast"]) or "–",
            f"{det['mean']:.1f} (max {det['max']})",
            _num(shot["face_sim"]),
            _num(shot["clip_score"], digits=1),
            _flags(shot["flags"]),
        )
    return table


def character_table(report: dict[str, Any]) -> Table:
    """One row per character and shot: similarity to the cast photos, frames seen, flags."""
    table = Table(title="Characters per shot (similarity to the cast photos)", title_justify="left")
    for column in ("character", "shot", "similarity", "seen", "flags"):
        table.add_column(column, justify="right" if column in ("similarity", "seen") else "left")
    for name, character in report["characters"].items():
        for shot_id in character["shots"]:
            entry = report["shots"][shot_id]["characters"][name]
            seen = f"{entry['frames_seen']}/{report['shots'][shot_id]['frames']}"
            table.add_row(name, shot_id, _num(entry["similarity"]), seen, _flags(entry["flags"]))
    return table


def consistency_table(report: dict[str, Any]) -> Table:
    """One row per character: mean similarity, the weakest pair of shots, drift flags."""
    table = Table(title="Cross-shot consistency", title_justify="left")
    for column in ("character", "shots", "mean sim", "weakest pair", "flags"):
        table.add_column(column, justify="right" if column == "mean sim" else "left")
    for name, character in report["characters"].items():
        pairs = character["consistency"]
        weakest = min(pairs, key=lambda p: p["similarity"]) if pairs else None
        pair_text = f"{weakest['a']} ↔ {weakest['b']}: {weakest['similarity']:.2f}" if weakest else "–"
        drift = [f for f in character["flags"] if f.startswith("drift:")]
        table.add_row(
            name, str(len(character["shots"])), _num(character["mean_similarity"]), pair_text, _flags(drift)
        )
    return table


@app.command("eval")
def eval_command(
    story: StoryArgument = Path("story.yaml"),
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="Face backend: auto (ArcFace if its weights are there, else dlib), arcface, "
            "curricularface or dlib (offline, numbers not comparable with ArcFace).",
        ),
    ] = "auto",
    model: ModelOption = None,
    clip: Annotated[
        Path | None,
        typer.Option("--clip", envvar="STORYREEL_CLIP", help="Local CLIP ViT-B/32 folder, for CLIPScore."),
    ] = None,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames sampled per shot.")] = DEFAULT_FRAMES,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Same-person similarity threshold (default: the backend's)."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda (ArcFace / CLIP).")] = "cpu",
) -> None:
    """Check every character in every rendered shot; writes renders/eval.json and the review page."""
    from storyreel.evaluate import evaluate_story, write_eval
    from storyreel.outputs import refresh_review
    from storyreel.project import Project

    project = Project.find(story)
    loaded = project.load_story()
    with console_err.status("evaluating…") as status:
        report = evaluate_story(
            loaded,
            project,
            backend=backend,
            model_dir=model,
            clip_dir=clip,
            frames=frames,
            threshold=threshold,
            device=device,
            progress=lambda message: status.update(f"evaluating: {message}"),
        )
    path = write_eval(project, report)
    review = refresh_review(loaded, project)
    label = report["backend_label"]
    if report["offline_fallback"]:
        console.print(f"[yellow]offline backend:[/] {label}", highlight=False)
    else:
        console.print(f"backend: {label}", highlight=False)
    console.print(shot_table(report))
    if report["characters"]:
        console.print(character_table(report))
        console.print(consistency_table(report))
    flagged = report["flag_count"]
    summary = f"[red]{flagged} flag(s)[/]" if flagged else "[green]no flags[/]"
    console.print(f"{summary} (threshold {report['threshold']:.2f}) · wrote {path}", highlight=False)
    console.print(f"review page: {review}", highlight=False)
