"""`storyreel` commands: eval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ingredients_model.metrics.face_similarity import BackendName
from ingredients_model.metrics.protocols import DEFAULT_PROTOCOL, ProtocolChoice
from storyreel.cli.app import app, console, reporter
from storyreel.cli.batch import each_story, exit_for, print_story_count
from storyreel.cli.console import emit_json
from storyreel.cli.options import (
    CacheOption,
    CacheThresholdOption,
    CastLibraryOption,
    JsonOption,
    KeepGoingOption,
    ModelOption,
    SetOption,
    StoriesArgument,
    expand_stories,
    keep_going_for,
    shot_overrides,
    single_variant,
)
from storyreel.environment import environment_help
from storyreel.errors import StoryreelError
from storyreel.evaluate import DEFAULT_FRAMES
from storyreel.reporting import shown_path


def _num(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def _flags(flags: list[str]) -> str:
    return f"[red]{', '.join(flags)}[/]" if flags else "[green]ok[/]"


# per protocol: the shot entry's scores shown, (key, name, digits)
_SCORES = {
    "released": [("face_sim", "sim", 2), ("clip_score", "CLIP", 1), ("fid", "FID", 1)],
    "strict": [("face_sim", "sim", 2), ("clip_score", "CLIP", 1)],
}


def shot_table(report: dict[str, Any]) -> Table:
    """One row per shot: faces found, one column per computed protocol (face similarity, CLIPScore and, for
    released, FID), flags."""
    table = Table(title="Shots", title_justify="left")
    protocols = [name for name, entry in report["protocols"].items() if entry["computed"]]
    table.add_column("shot")
    table.add_column("cast")
    table.add_column("faces/frame", justify="right")
    for name in protocols:
        labels = " / ".join(label for _k, label, _d in _SCORES[name])
        table.add_column(f"{name}\n{labels}", justify="right", no_wrap=True)
    table.add_column("flags")
    for shot_id, shot in report["shots"].items():
        if shot["status"] != "ok":
            note = "not rendered" if shot["status"] == "not_rendered" else "stale: re-render"
            table.add_row(
                shot_id, ", ".join(shot["cast"]), "–", *["–"] * len(protocols), f"[yellow]{note}[/]"
            )
            continue
        det = shot["detections"]
        scores = [
            " / ".join(
                _num((shot.get(name) or {}).get(key), digits=digits) for key, _l, digits in _SCORES[name]
            )
            for name in protocols
        ]
        table.add_row(
            shot_id,
            ", ".join(shot["cast"]) or "–",
            f"{det['mean']:.1f} (max {det['max']})",
            *scores,
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


def engine_tables(report: dict[str, Any]) -> list[Table]:
    """Engines side by side (when the story was evaluated with more than one): face similarity and
    CLIPScore per shot, mean similarity per person; the better value of each row in bold."""
    engines = report.get("engines") or {}
    if len(engines) < 2:
        return []
    names = sorted(engines)

    def row(values: list[float | None], digits: int = 2, scale: float = 1.0) -> list[str]:
        best = max((v for v in values if v is not None), default=None)
        return [
            f"[bold]{_num(v, scale, digits)}[/]" if v is not None and v == best else _num(v, scale, digits)
            for v in values
        ]

    shots = Table(title="Engines per shot (face sim · CLIPScore)", title_justify="left")
    shots.add_column("shot")
    for name in names:
        shots.add_column(f"{name} face sim", justify="right")
        shots.add_column(f"{name} CLIP", justify="right")
    for shot_id in dict.fromkeys(sid for name in names for sid in engines[name]["shots"]):
        entries = [engines[name]["shots"].get(shot_id, {}) for name in names]
        faces = row([e.get("face_sim") for e in entries])
        clips = row([e.get("clip_score") for e in entries], digits=1)
        shots.add_row(shot_id, *[cell for pair in zip(faces, clips, strict=True) for cell in pair])
    people = Table(title="Engines per person (mean similarity to the cast photos)", title_justify="left")
    people.add_column("character")
    for name in names:
        people.add_column(name, justify="right")
    for person in dict.fromkeys(p for name in names for p in engines[name]["characters"]):
        values = [engines[name]["characters"].get(person, {}).get("mean_similarity") for name in names]
        people.add_row(person, *row(values))
    return [shots, people]


def cache_compare_tables(report: dict[str, Any]) -> tuple[Table, Table]:
    """Per shot: the cache, both times, speed-up and pixel difference; per character: both similarities."""
    shots = Table(title="Step cache against no cache (same job, same seed)", title_justify="left")
    for column in ("shot", "cache", "cached s", "uncached s", "speed-up", "PSNR dB", "mean |Δ|"):
        shots.add_column(column, justify="left" if column in ("shot", "cache") else "right")
    people = Table(title="Similarity to the cast photos", title_justify="left")
    for column in ("shot", "character", "cached", "uncached"):
        people.add_column(column, justify="left" if column in ("shot", "character") else "right")
    for shot_id, shot in report["shots"].items():
        options = ", ".join(f"{k}={v}" for k, v in shot["cache"].items() if k != "kind")
        cached, uncached = shot["cached"], shot["uncached"]
        shots.add_row(
            escape(shot_id),
            escape(shot["cache"]["kind"] + (f" ({options})" if options else "")),
            f"{cached['denoise_seconds']:.1f}",
            f"{uncached['denoise_seconds']:.1f}",
            "–" if shot["speedup"] is None else f"{shot['speedup']:.2f}x",
            "identical" if shot["psnr_db"] is None else f"{shot['psnr_db']:.1f}",
            f"{shot['mean_abs_diff']:.2f}",
        )
        for name in shot["cast"]:
            people.add_row(
                escape(shot_id), name, _num(cached["characters"][name]), _num(uncached["characters"][name])
            )
    return shots, people


@app.command("eval", epilog=environment_help("STORYREEL_CLIP", "STORYREEL_CAST"))
def eval_command(
    stories: StoriesArgument = None,
    backend: Annotated[
        BackendName,
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
    compare_cache: Annotated[
        bool,
        typer.Option(
            "--compare-cache",
            help="Render each shot that has a step cache twice, with and without it (same seed), and compare "
            "the clips: time, PSNR, face similarity. Writes renders/cache_compare.json.",
        ),
    ] = False,
    cache: CacheOption = None,
    cache_threshold: CacheThresholdOption = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="With --compare-cache: these shot ids (repeat or a,b).")
    ] = None,
    keep_going: KeepGoingOption = None,
    cast_library: CastLibraryOption = None,
    json_: JsonOption = False,
    protocol: Annotated[
        ProtocolChoice,
        typer.Option(
            "--protocol",
            help="released (the public Ingredients scripts' rules, beside the paper's numbers), strict "
            "(ours: every person present and recognisable) or both.",
        ),
    ] = DEFAULT_PROTOCOL,
    face_models: Annotated[
        Path | None,
        typer.Option(
            "--face-models",
            help="released: folder with insightface's buffalo_l (default: <model>/face_encoder/models/"
            "buffalo_l, then ~/.insightface/models/buffalo_l).",
        ),
    ] = None,
    set_: SetOption = None,
) -> None:
    """Check every character in every rendered shot; writes the view's eval.json and review page.

    With --compare-cache: compare each shot's step cache with no cache instead (see the README)."""
    from storyreel.api import evaluate, load_story
    from storyreel.cli.render_commands import split_ids

    paths = expand_stories(stories)
    if not compare_cache and (cache is not None or cache_threshold is not None or only):
        raise StoryreelError(
            "--cache, --cache-threshold and --only belong to --compare-cache",
            hint="storyreel eval STORY --compare-cache [--cache SPEC] [--only SHOT]",
        )
    overrides = shot_overrides(None, cache, cache_threshold)
    values = single_variant(set_)

    def one(path: Path) -> dict[str, Any]:
        if compare_cache:
            options = {"backend": backend, "frames": frames, "threshold": threshold, "device": device}
            return _compare_one(path, values, model, overrides, split_ids(only), cast_library, **options)
        label = escape(shown_path(path))
        with reporter.status(f"{label}: evaluating…") as spinner:

            def progress(message: str) -> None:
                if spinner is not None:
                    spinner.update(f"{label}: evaluating: {escape(message)}")

            report, written, review = evaluate(
                load_story(path, values, cast_library=cast_library),
                backend=backend,
                model_dir=model,
                clip_dir=clip,
                frames=frames,
                threshold=threshold,
                device=device,
                protocol=protocol,
                face_models=face_models,
                progress=progress,
            )
        print_report(path, report, written, review)
        return {"report": report, "eval_json": str(written.absolute()), "review": str(review.absolute())}

    outcomes = each_story(paths, one, keep_going=keep_going_for(keep_going, paths))
    print_story_count(outcomes)
    if json_:
        entries = [{**o.to_json(), **(o.value or {"report": None})} for o in outcomes]
        emit_json("eval", {"ok": all(o.status == "ok" for o in outcomes), "stories": entries})
    exit_for(outcomes)


def print_report(path: Path, report: dict[str, Any], written: Path, review: Path) -> None:
    """One story's evaluation as tables (results: stdout)."""
    label = report["backend_label"]
    console.print(f"[bold]{escape(shown_path(path))}[/]", highlight=False)
    if report["offline_fallback"]:
        console.print(f"[yellow]offline backend:[/] {escape(label)}", highlight=False)
    else:
        console.print(f"backend: {escape(label)}", highlight=False)
    for entry in report["protocols"].values():
        notes = f" — {escape('; '.join(entry['notes']))}" if entry["notes"] else ""
        colour = "green" if entry["computed"] else "yellow"
        console.print(f"[{colour}]protocol {entry['label']}[/]{notes}", highlight=False)
    console.print(shot_table(report))
    if report["characters"]:
        console.print(character_table(report))
        console.print(consistency_table(report))
    for table in engine_tables(report):
        console.print(table)
    flagged = report["flag_count"]
    summary = f"[red]{flagged} flag(s)[/]" if flagged else "[green]no flags[/]"
    written_at = escape(shown_path(written))
    console.print(f"{summary} (threshold {report['threshold']:.2f}) · wrote {written_at}", highlight=False)
    console.print(f"review page: {escape(shown_path(review))}", highlight=False)


def _compare_one(
    path: Path,
    variables: dict[str, str],
    model: Path | None,
    overrides: Any,
    only: list[str] | None,
    cast_library: Path | None,
    **options: Any,
) -> dict:
    """`eval --compare-cache` of one story (or variant: ``variables``): render, compare, print, write the
    view's cache_compare.json."""
    from storyreel.api import load_story
    from storyreel.cache_compare import compare_cache, write_cache_compare
    from storyreel.project import CACHE_COMPARE, Project

    story = load_story(path, variables, cast_library=cast_library)
    project = Project.from_story(story)
    label = escape(shown_path(path))
    with reporter.status(f"{label}: comparing…") as spinner:

        def progress(message: str) -> None:
            if spinner is not None:
                spinner.update(f"{label}: comparing: {escape(message)}")

        report = compare_cache(
            story, project, overrides=overrides, only=only, model_dir=model, progress=progress, **options
        )
    written = write_cache_compare(project, report)
    console.print(f"[bold]{label}[/]", highlight=False)
    prefix = "[yellow]offline backend:[/]" if report["offline_fallback"] else "backend:"
    console.print(f"{prefix} {escape(report['backend_label'])}", highlight=False)
    for table in cache_compare_tables(report):
        console.print(table)
    clips = escape(shown_path(project.renders_dir / CACHE_COMPARE))
    console.print(f"clips in {clips} · wrote {escape(shown_path(written))}", highlight=False)
    return {"cache_compare": report, "cache_compare_json": str(written.absolute())}
