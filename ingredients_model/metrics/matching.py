"""The strict protocol's multi-identity rule (ours): greedy one-to-one assignment, then the minimum.

For one frame, ``sim[r, f]`` is the similarity between reference face ``r`` and detected face ``f``.
The highest remaining pair is matched first; its reference and its face are then removed, and so on
until one side runs out. The frame's score is the minimum over *all references* of their matched
similarity, where a reference left without a face scores 0, clamped at 0: a clip only scores well when
*every* person is present and looks like their reference. (The public Ingredients scripts instead take the
best pair per frame; see :mod:`ingredients_model.metrics.released`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Match:
    """Reference ``ref`` was assigned detected face ``face`` with this ``similarity``."""

    ref: int
    face: int
    similarity: float


@dataclass(frozen=True)
class FrameMatch:
    """The outcome of matching one frame's detected faces to the references."""

    matches: tuple[Match, ...]
    num_refs: int
    num_faces: int
    missing: tuple[int, ...] = field(default=())  # references with no face left for them
    extra: tuple[int, ...] = field(default=())  # detected faces no reference was matched to

    @property
    def min_similarity(self) -> float | None:
        """The minimum over matches (None when nothing matched)."""
        return min((m.similarity for m in self.matches), default=None)

    @property
    def strict_score(self) -> float:
        """The strict per-frame score: minimum over references, 0 for a missing one, clamped at 0."""
        if self.num_refs == 0:
            return 0.0
        values = [self.similarity_of(r) for r in range(self.num_refs)]
        return max(0.0, min(0.0 if v is None else v for v in values))

    def similarity_of(self, ref: int) -> float | None:
        """The similarity of reference ``ref``'s match in this frame, or None if it has none."""
        return next((m.similarity for m in self.matches if m.ref == ref), None)

    def face_of(self, ref: int) -> int | None:
        """The index of the detected face matched to reference ``ref``, or None."""
        return next((m.face for m in self.matches if m.ref == ref), None)


def greedy_match(sim: np.ndarray) -> FrameMatch:
    """Match references (rows) to detected faces (columns) greedily, highest similarity first, one to one.

    Ties are broken by the lower reference index, then the lower face index (deterministic).
    """
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"similarity matrix must be 2-D [refs, faces], got shape {sim.shape}")
    if not np.all(np.isfinite(sim)):
        raise ValueError("similarity matrix contains NaN or infinite values")
    num_refs, num_faces = sim.shape
    order = sorted(
        ((-sim[r, f], r, f) for r in range(num_refs) for f in range(num_faces)),
    )
    used_refs: set[int] = set()
    used_faces: set[int] = set()
    matches: list[Match] = []
    for neg, r, f in order:
        if r in used_refs or f in used_faces:
            continue
        matches.append(Match(ref=r, face=f, similarity=float(-neg)))
        used_refs.add(r)
        used_faces.add(f)
        if len(used_refs) == num_refs or len(used_faces) == num_faces:
            break
    matches.sort(key=lambda m: m.ref)
    return FrameMatch(
        matches=tuple(matches),
        num_refs=num_refs,
        num_faces=num_faces,
        missing=tuple(r for r in range(num_refs) if r not in used_refs),
        extra=tuple(f for f in range(num_faces) if f not in used_faces),
    )


@dataclass(frozen=True)
class ClipMatchSummary:
    """Per-clip aggregate of :class:`FrameMatch` results (the paper averages the per-frame minimum)."""

    face_sim: float | None  # mean over all frames of FrameMatch.strict_score (None without frames)
    per_ref: tuple[float | None, ...]  # mean similarity of each reference over the frames it was matched in
    frames: int  # frames evaluated
    frames_with_faces: int  # frames with at least one detected face
    frames_missing: tuple[int, ...]  # per reference: frames in which it had no match
    mean_detections: float
    max_detections: int


def summarize(frames: Sequence[FrameMatch]) -> ClipMatchSummary:
    """Aggregate per-frame matches into the clip's strict face-similarity score.

    Every frame counts: a person missing from a frame (or a frame without faces) scores 0 there, and is
    counted in ``frames_missing``. ``per_ref`` averages each person's similarity (clamped at 0) over the
    frames they were matched in.
    """
    num_refs = max((fm.num_refs for fm in frames), default=0)
    scores = [fm.strict_score for fm in frames]
    per_ref: list[float | None] = []
    missing: list[int] = []
    for r in range(num_refs):
        values = [fm.similarity_of(r) for fm in frames]
        seen = [max(0.0, v) for v in values if v is not None]
        per_ref.append(float(np.mean(seen)) if seen else None)
        missing.append(sum(v is None for v in values))
    detections = [fm.num_faces for fm in frames]
    return ClipMatchSummary(
        face_sim=float(np.mean(scores)) if scores else None,
        per_ref=tuple(per_ref),
        frames=len(frames),
        frames_with_faces=sum(n > 0 for n in detections),
        frames_missing=tuple(missing),
        mean_detections=float(np.mean(detections)) if detections else 0.0,
        max_detections=max(detections, default=0),
    )
