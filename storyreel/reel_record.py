"""The record of the last reel assembly (``.storyreel/reel.json``) and what it says about freshness.

The record says what the reel was last assembled from (story file, clip keys, music: ``inputs``) and
how (the effective assembly ``options``), where each shot sits in it (``segments``), and which eval
results the review page shows (``review_eval``). :mod:`storyreel.outputs` writes it whenever it builds
the reel or refreshes the page, so the record always describes the files on disk; the runner reads it
to skip an assembly that would change nothing.
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
from storyreel.reel import ReelResult, Segment, assemble_reel, planned_timeline, reel_settings

if TYPE_CHECKING:
    from storyreel.project import Project
    from storyreel.story import Story

__all__ = [
    "assembly_options",
    "read_reel_record",
    "recorded_reel",
    "reel_inputs",
    "reel_is_current",
    "reel_timeline",
    "review_is_current",
    "write_reel_record",
    "write_review_note",
]


def _digest(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def reel_inputs(story: Story, project: Project) -> dict[str, Any]:
    """Everything the reel is built from: story file, each clip's key and hash (from its record, which a
    render checks the clip against), music (eval results only touch the page)."""
    from storyreel import __version__
    from storyreel.plan import read_clip_meta

    clips = {}
    for shot in story.shots:
        meta = read_clip_meta(project, shot.id) or {}
        checksum = meta.get("clip") if isinstance(meta.get("clip"), dict) else {}
        clips[shot.id] = {"key": meta.get("key"), "sha256": checksum.get("sha256")}
    return {
        "story": _digest(project.story_path),
        "clips": clips,
        "music": _digest(Path(story.music.file)) if story.music else None,
        "storyreel": __version__,
    }


NOT_RECORDED = {"on_progress"}  # assemble_reel arguments that do not change the reel


def _jsonable(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else str(value)


def assembly_options(story: Story, project: Project, **options: Any) -> dict[str, Any]:
    """The effective assembly options for ``options`` (defaults filled in), as stored in the record."""
    _, output, settings = reel_settings(story, project, **options)
    defaults = {
        name: param.default
        for name, param in inspect.signature(assemble_reel).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY and name not in NOT_RECORDED
    }
    merged = {**defaults, **settings}
    merged["video_format"] = merged["video_format"] or _format_for(output)
    merged["output"] = os.path.relpath(output, project.root)
    return json.loads(json.dumps(merged, default=_jsonable, sort_keys=True))


def _format_for(output: Path) -> str:
    return "webm" if output.suffix.lower() == ".webm" else "mp4"


def _stat(path: Path) -> list[int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def read_reel_record(project: Project) -> dict[str, Any] | None:
    """The record of the last assembly, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads(project.reel_record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_reel_record(
    project: Project,
    result: ReelResult,
    *,
    inputs: dict[str, Any],
    options: dict[str, Any],
    review: bool,
) -> None:
    """Record an assembly: its ``inputs`` (taken before assembling), effective ``options``, the reel's
    file and timeline, and whether the review page was written with it."""
    record = {
        "inputs": inputs,
        "options": options,
        "review": review,
        "review_eval": _digest(project.eval_path),
        "built": time.time(),
        "reel": {"path": options["output"], "stat": _stat(result.path)},
        "fps": result.fps,
        "segments": [asdict(seg) for seg in result.segments],
    }
    atomic_write_json(project.reel_record_path, record)


def write_review_note(project: Project) -> None:
    """Note in the record that the review page now shows the reel on disk and the current eval results."""
    record = read_reel_record(project)
    if record is not None:
        record.update(review=True, review_eval=_digest(project.eval_path))
        atomic_write_json(project.reel_record_path, record)


def reel_is_current(story: Story, project: Project, **options: Any) -> bool:
    """True when the reel exists and was last assembled from exactly the current inputs with exactly
    these options (``options`` as for :func:`storyreel.reel.build_reel`)."""
    record = read_reel_record(project)
    if record is None:
        return False
    wanted = assembly_options(story, project, **options)
    return (
        (project.root / wanted["output"]).is_file()
        and record.get("options") == wanted
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


def recorded_reel(project: Project) -> Path | None:
    """The reel file the last assembly wrote, if it still exists."""
    record = read_reel_record(project)
    try:
        path = project.root / record["reel"]["path"]
    except (TypeError, KeyError):
        return None
    return path if path.is_file() else None


def reel_timeline(story: Story, project: Project, reel: Path) -> tuple[int, list[Segment]] | None:
    """Where each shot sits in ``reel``: (fps, segments), or None when it cannot be known.

    Taken from the record when it describes this very file; otherwise planned again (cheaply: probing,
    no encoding) from the current clips with the story's settings, if the reel and every clip exist.
    """
    reel = Path(reel)
    record = read_reel_record(project)
    if record is not None:
        try:
            same = (project.root / record["reel"]["path"]).resolve() == reel.resolve()
            if same and record["reel"]["stat"] == _stat(reel):
                return int(record["fps"]), [Segment(**seg) for seg in record["segments"]]
        except (TypeError, KeyError, ValueError):
            pass
    if not reel.is_file():
        return None
    return planned_timeline(story, project)
