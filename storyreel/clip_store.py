"""The clip store: every rendered clip once, by job key, each reel's view of it, and how a clip is
verified against its record.

Engines render into ``renders/clips/<key>.mp4`` (+ ``<key>.json``). A story's view (its folder under
``renders/``, see :mod:`storyreel.project`) holds ``<shot>.mp4|json`` as hard links to the stored clip of
that shot's current job, so stories and ``--set`` variants whose jobs are equal share one clip, and the
reel, review page and eval keep reading ``<view>/<shot>.mp4``. Clips of earlier versions
(``renders/<shot>.mp4|json``) are found by their recorded key and join the store as they are.

A clip's record holds the clip's size and sha256 (:func:`clip_checksum`); a clip that does not check out
(:func:`clip_problem`) is never reused from the store, and in a view it is ``damaged``. As the view's
files are links to the stored ones, one check covers both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyreel.fsutil import file_sha256, link_file, read_json_object

if TYPE_CHECKING:
    from storyreel.plan import RenderJob
    from storyreel.project import Project

__all__ = ["clip_checksum", "clip_problem", "find_stored", "link_into_view", "recorded_key"]

_VIDEO_SIGNATURES = ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"))
"""Where MP4 (an ``ftyp`` box first, as ``+faststart`` writes it) and WebM/Matroska (EBML) files say so."""


def clip_checksum(path: Path) -> dict[str, Any]:
    """What a clip's record says about the file, so it can be verified later."""
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def clip_problem(path: Path, meta: Mapping[str, Any]) -> str | None:
    """Why the clip at ``path`` cannot be trusted (its size or hash differ from what its record ``meta``
    says, or it does not even start like a video), or None when it checks out."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(12)
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    if not any(head[at : at + len(magic)] == magic for at, magic in _VIDEO_SIGNATURES):
        return "it is empty" if size == 0 else "it is not an MP4 or WebM video"
    recorded = meta.get("clip")
    if isinstance(recorded, dict):
        if recorded.get("bytes") != size:
            return f"it has {size} bytes, its record says {recorded.get('bytes')}"
        if recorded.get("sha256") != file_sha256(path):
            return "its content differs from its record (sha256)"
    return None


def recorded_key(meta_path: Path) -> str | None:
    """The job key a clip's record names, or None."""
    meta = read_json_object(meta_path)
    key = meta.get("key") if meta else None
    return key if isinstance(key, str) else None


def find_stored(project: Project, job: RenderJob) -> tuple[Path, Path] | None:
    """(clip, record) of a finished clip of ``job`` that checks out against its record: in the store,
    else a clip of an earlier version in ``renders/`` whose record names this key; None when there is
    none (a damaged one is passed over: it is rendered again)."""
    candidates = (
        (project.stored_clip_path(job.key), project.stored_meta_path(job.key)),
        (project.renders_root / f"{job.shot_id}.mp4", project.renders_root / f"{job.shot_id}.json"),
    )
    for clip, meta_path in candidates:
        meta = read_json_object(meta_path)
        if (
            clip.is_file()
            and meta is not None
            and meta.get("key") == job.key
            and not clip_problem(clip, meta)
        ):
            return clip, meta_path
    return None


def link_into_view(project: Project, job: RenderJob, clip: Path, meta: Path) -> None:
    """Make the finished clip (``clip``, ``meta``) of ``job`` the shot's clip in the store and in this
    reel's view (the clip first, then its record: a view is current only once both agree)."""
    pairs = [
        (project.stored_clip_path(job.key), project.stored_meta_path(job.key)),
        (project.clip_path(job.shot_id), project.clip_meta_path(job.shot_id)),
    ]
    for clip_target, meta_target in pairs:
        link_file(clip, clip_target)
        link_file(meta, meta_target)
