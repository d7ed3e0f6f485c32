"""Evaluation results in plain words: how much each person in a shot resembles their cast photos.

``storyreel eval`` measures a similarity per person and shot with a face backend, and flags it below the
backend's same-person threshold (``threshold`` in eval.json). Here those numbers become labels:

* **good**: at least :data:`GOOD_RESEMBLANCE` for the backend;
* **borderline**: from the same-person threshold up to that;
* **poor**: below the same-person threshold (eval flags it ``low_similarity``).

Backends measure differently (ArcFace's cosine vs dlib's 1 − distance), so the good line is per backend:
this table is the one place it is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "GOOD_RESEMBLANCE",
    "PersonVerdict",
    "protocol_scores",
    "resemblance",
    "shot_notes",
    "shot_verdicts",
    "story_protocol_scores",
]

Label = Literal["good", "borderline", "poor", "unknown"]

GOOD_RESEMBLANCE: dict[str, float] = {
    "arcface": 0.5,  # same person ≥ 0.3 (insightface's usual threshold); 0.5 and up is a clear match
    "curricularface": 0.5,
    "dlib": 0.55,  # = dlib distance ≤ 0.45 (same person below 0.6)
}
"""Similarity at or above which a person's resemblance is good, per face backend."""
GOOD_MARGIN = 0.15
"""For a backend not in the table: good starts this far above its same-person threshold."""


def resemblance(similarity: float | None, backend: str, threshold: float) -> Label:
    """The label of ``similarity`` measured by ``backend`` whose same-person threshold is ``threshold``."""
    if similarity is None:
        return "unknown"
    good = GOOD_RESEMBLANCE.get(backend, threshold + GOOD_MARGIN)
    if similarity >= good:
        return "good"
    return "borderline" if similarity >= threshold else "poor"


@dataclass(frozen=True)
class PersonVerdict:
    """One person in one shot, in plain words."""

    name: str
    label: Label
    similarity: float | None
    seen: int
    frames: int
    sentence: str


def shot_verdicts(entry: dict[str, Any], evaluation: dict[str, Any]) -> list[PersonVerdict]:
    """Each person of one eval.json shot entry, labelled (see the module docstring)."""
    backend = str(evaluation.get("backend", ""))
    threshold = float(evaluation.get("threshold") or 0.0)
    frames = int(entry.get("frames") or 0)
    verdicts = []
    for name, person in (entry.get("characters") or {}).items():
        if not isinstance(person, dict):
            continue
        similarity = person.get("similarity")
        label = resemblance(similarity, backend, threshold)
        seen = int(person.get("frames_seen") or 0)
        words = "not found" if label == "unknown" else f"{label} resemblance ({similarity:.2f})"
        if seen < frames:
            words += f", missing in {frames - seen} of {frames} frames"
        if person.get("duplicate_frames"):
            words += f", seen twice in {person['duplicate_frames']} frames"
        verdicts.append(PersonVerdict(name, label, similarity, seen, frames, words))
    return verdicts


_SHOT_FLAGS = {
    "stale": "rendered for another prompt or cast than the story has now: render it again",
    "no_faces": "no face found in any sampled frame",
    "extra_faces": "more faces than cast members on average",
}


def shot_notes(entry: dict[str, Any]) -> list[str]:
    """Shot-level findings of one eval.json shot entry in words (not per person)."""
    if entry.get("status") == "not_rendered":
        return ["not rendered"]
    return [_SHOT_FLAGS[flag] for flag in entry.get("flags") or [] if flag in _SHOT_FLAGS]


_SCORES = (
    ("face_sim", "face similarity", "{:.2f}"),
    ("clip_score", "CLIPScore", "{:.1f}"),
    ("fid", "FID", "{:.1f}"),
)


def protocol_scores(entry: dict[str, Any], evaluation: dict[str, Any]) -> list[tuple[str, str]]:
    """Each evaluated protocol's scores for one eval.json shot entry, in words: (the protocol's label,
    ``released: face similarity 0.41, CLIPScore 28.3, FID 120.5``); one not computed says so."""
    if entry.get("status") == "not_rendered":
        return []
    lines = []
    for name, info in (evaluation.get("protocols") or {}).items():
        label = str(info.get("label", name)) if isinstance(info, dict) else name
        scores = entry.get(name)
        if not isinstance(scores, dict):
            lines.append((label, f"{name}: not computed"))
            continue
        parts = [
            f"{words} {shown.format(scores[key])}"
            for key, words, shown in _SCORES
            if isinstance(scores.get(key), int | float) and not isinstance(scores.get(key), bool)
        ]
        lines.append((label, f"{name}: {', '.join(parts) or 'no scores'}"))
    return lines


def story_protocol_scores(evaluation: dict[str, Any], shot_ids: list[str]) -> list[tuple[str, str]]:
    """Each evaluated protocol's scores over the story's shots ``shot_ids``, in words: the mean of every
    score over the shots that have it (``strict: face similarity 0.41, CLIPScore 28.3 (mean of 4 shots)``);
    one not computed for any shot says so."""
    shots = evaluation.get("shots") if isinstance(evaluation.get("shots"), dict) else {}
    entries = [shots.get(shot_id) for shot_id in shot_ids]
    entries = [e for e in entries if isinstance(e, dict) and e.get("status") == "ok"]
    lines = []
    for name, info in (evaluation.get("protocols") or {}).items():
        label = str(info.get("label", name)) if isinstance(info, dict) else name
        scored = [e[name] for e in entries if isinstance(e.get(name), dict)]
        parts = []
        for key, words, shown in _SCORES:
            values = [
                s[key]
                for s in scored
                if isinstance(s.get(key), int | float) and not isinstance(s.get(key), bool)
            ]
            if values:
                parts.append(f"{words} {shown.format(sum(values) / len(values))}")
        if not scored:
            lines.append((label, f"{name}: not computed"))
        else:
            count = f"mean of {len(scored)} shot{'s' if len(scored) != 1 else ''}"
            lines.append((label, f"{name}: {', '.join(parts) or 'no scores'} ({count})"))
    return lines
