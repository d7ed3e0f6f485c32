"""The record of the last assembly of a story's reels and what it says about freshness.

The record (``.storyreel/reel.json``, or ``.storyreel/reels/<view>.json`` for other views, see
:mod:`storyreel.project`) says what the reels were last assembled from (story file, variables, clip
keys, music and brand files: ``inputs``), and for each format how (the effective assembly ``options``),
where its file is and where each shot sits in it (``segments``), and which eval results the review page
shows (``review_eval``). :mod:`storyreel.outputs` writes it whenever it builds the reels or refreshes the
page, so the record always describes the files on disk; the runner reads it to skip an assembly that
would change nothing.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyreel.fsutil import atomic_write_json, file_sha256
from storyreel.reel import ReelResult, Segment, assemble_reel
from storyreel.reframe import FRAMING_VERSION
from storyreel.story_reels import planned_timeline, reel_settings

if TYPE_CHECKING:
    from storyreel.project import Project
    from storyreel.story import Story

__all__ = [
    "assembly_options",
    "is_recorded",
    "read_reel_record",
    "recorded_reel",
    "recorded_reels",
    "reel_inputs",
    "reel_is_current",
    "reel_timeline",
    "review_is_current",
    "write_reel_record",
    "write_review_note",
]

RECORD_VERSION = 2  # 2: one entry per format


def _digest(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return file_sha256(path)
    except OSError:
        return None


def reel_inputs(story: Story, project: Project) -> dict[str, Any]:
    """Everything the reels are built from: story file and variables, each clip's key and hash (from its
    record, which a render checks the clip against), music, brand files (eval results only touch the
    page)."""
    from storyreel import __version__
    from storyreel.plan import read_clip_meta

    clips = {}
    for shot in story.shots:
        meta = read_clip_meta(project, shot.id) or {}
        checksum = meta.get("clip") if isinstance(meta.get("clip"), dict) else {}
        clips[shot.id] = {"key": meta.get("key"), "sha256": checksum.get("sha256")}
    brand = story.brand
    return {
        "story": _digest(project.story_path),
        "variables": story.variables,
        "clips": clips,
        "music": _digest(Path(story.music.file)) if story.music else None,
        "logo": _digest(brand.logo.file) if brand and brand.logo else None,
        "font": _digest(brand.font) if brand and brand.font else None,
        "storyreel": __version__,
    }


NOT_RECORDED = {"on_progress"}  # assemble_reel arguments that do not change the reel


def _jsonable(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else str(value)


def assembly_options(story: Story, project: Project, **options: Any) -> list[dict[str, Any]]:
    """The effective assembly options of every format for ``options`` (defaults filled in), as recorded."""
    defaults = {
        name: param.default
        for name, param in inspect.signature(assemble_reel).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY and name not in NOT_RECORDED
    }
    wanted = []
    for fmt in story.output.reel_formats:
        _, output, settings = reel_settings(story, project, fmt, **options)
        merged = {**defaults, **settings, "framing_version": FRAMING_VERSION}
        merged["video_format"] = merged["video_format"] or _format_for(output)
        merged["output"] = os.path.relpath(output, project.root)
        wanted.append(json.loads(json.dumps(merged, default=_jsonable, sort_keys=True)))
    return wanted


def _format_for(output: Path) -> str:
    return "webm" if output.suffix.lower() == ".webm" else "mp4"


def _stat(path: Path) -> list[int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def read_reel_record(project: Project) -> dict[str, Any] | None:
    """The record of the last assembly, or None when there is none (or it is unreadable or older)."""
    try:
        record = json.loads(project.reel_record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        return None
    return record


def write_reel_record(
    project: Project,
    results: list[ReelResult],
    *,
    inputs: dict[str, Any],
    options: list[dict[str, Any]],
    review: bool,
) -> None:
    """Record an assembly: its ``inputs`` (taken before assembling), and for each format's result its
    effective ``options``, file and timeline; and whether the review page was written with it."""
    record = {
        "version": RECORD_VERSION,
        "inputs": inputs,
        "review": review,
        "review_eval": _digest(project.eval_path),
        "built": time.time(),
        "reels": [
            {
                "label": result.label,
                "options": wanted,
                "path": wanted["output"],
                "stat": _stat(result.path),
                "fps": result.fps,
                "width": result.width,
                "height": result.height,
                "framings": result.framings,
                "warnings": result.warnings,
                "segments": [asdict(seg) for seg in result.segments],
            }
            for result, wanted in zip(results, options, strict=True)
        ],
    }
    atomic_write_json(project.reel_record_path, record)


def write_review_note(project: Project) -> None:
    """Note in the record that the review page now shows the reels on disk and the current eval results."""
    record = read_reel_record(project)
    if record is not None:
        record.update(review=True, review_eval=_digest(project.eval_path))
        atomic_write_json(project.reel_record_path, record)


def reel_is_current(story: Story, project: Project, **options: Any) -> bool:
    """True when every format's reel exists and was last assembled from exactly the current inputs with
    exactly these options (``options`` as for :func:`storyreel.story_reels.build_reel`)."""
    record = read_reel_record(project)
    if record is None:
        return False
    wanted = assembly_options(story, project, **options)
    reels = record.get("reels") or []
    return (
        [entry.get("options") for entry in reels] == wanted
        and all((project.root / w["output"]).is_file() for w in wanted)
        and record.get("inputs") == reel_inputs(story, project)
    )


def review_is_current(project: Project) -> bool:
    """True when the review page was written with the last assembly and shows the current eval results."""
    record = read_reel_record(project)
    return (
        record is not None
        and record.get("review") is True
        and project.review_path.is_file()
        and record.get("review_eval") == _digest(project.eval_path)
    )


def is_recorded(entry: dict[str, Any], path: Path) -> bool:
    """Whether ``path`` is still the very file the record ``entry`` describes (same size and time)."""
    return entry.get("stat") == _stat(path)


def recorded_reels(project: Project) -> list[tuple[dict[str, Any], Path]]:
    """Every reel the last assembly wrote that still exists: (its record entry, its path)."""
    record = read_reel_record(project)
    found = []
    for entry in (record or {}).get("reels") or []:
        try:
            path = project.root / entry["path"]
        except (TypeError, KeyError):
            continue
        if path.is_file():
            found.append((entry, path))
    return found


def recorded_reel(project: Project) -> Path | None:
    """The first reel the last assembly wrote, if it still exists."""
    reels = recorded_reels(project)
    return reels[0][1] if reels else None


def reel_timeline(story: Story, project: Project, reel: Path) -> tuple[int, list[Segment]] | None:
    """Where each shot sits in ``reel``: (fps, segments), or None when it cannot be known.

    Taken from the record when it describes this very file; otherwise planned again (cheaply: probing,
    no encoding) from the current clips with the settings of the format that writes ``reel``, if the
    reel and every clip exist.
    """
    reel = Path(reel)
    for entry, path in recorded_reels(project):
        try:
            if path.resolve() == reel.resolve() and is_recorded(entry, reel):
                return int(entry["fps"]), [Segment(**seg) for seg in entry["segments"]]
        except (TypeError, KeyError, ValueError):
            continue
    if not reel.is_file():
        return None
    formats = story.output.reel_formats
    fmt = next((f for f in formats if (project.root / f.file).resolve() == reel.resolve()), formats[0])
    return planned_timeline(story, project, fmt)
