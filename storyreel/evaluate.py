"""`storyreel eval`: did every character stay themselves in every shot?

For each rendered shot, frames are sampled and every face in them is matched greedily (one to one) to
the shot's cast; each character's reference is the mean embedding of their cast photos (the chosen face
of each photo, see :mod:`storyreel.cast`). Face backends: ArcFace from the model folder's
``face_encoder/`` when present, else the offline dlib backend (labelled as such everywhere: its
numbers are not comparable with ArcFace's). CLIPScore is added when a local CLIP folder is given.

Scores come by protocol (:mod:`ingredients_model.metrics.protocols`): ``strict`` (ours: every person
present, greedy one-to-one matching, minimum over people, on the frames above) and ``released`` (the public
Ingredients scripts rule for rule: buffalo_l faces, the 2 largest per frame, best pair, 24 frames, per-frame
"FID", BGR CLIPScore; each cast photo's chosen face is a reference). The character checks and flags below
always use the strict matching.

``renders/eval.json`` (written atomically; read by the review page), format version 2::

    {
      "version": 2, "created": "<UTC ISO time>",
      "backend": "arcface" | "curricularface" | "dlib", "backend_label": str, "offline_fallback": bool,
      "threshold": float,          # same-person threshold: similarities below it are flagged
      "frames_per_shot": int, "clip_model": str | null,
      "protocols": {               # the protocols asked for (--protocol), released first
        "released" | "strict": {"label": str, "face_model": str | null, "frames": int,
                                "computed": bool, "notes": [str, ...]}
      },
      "shots": {
        "<shot id>": {
          "status": "ok" | "not_rendered" | "stale",   # stale: rendered with cast no longer in the story
          "clip": "renders/<id>.mp4", "key": str | null, "engine": str | null,
          "cast": [name, ...],              # left to right, as rendered
          "released": {"face_sim": float | null, "clip_score": float | null, "fid": float | null,
                       "frames": int, "frames_without_faces": int} | null,   # null: not computed
          "strict": {"face_sim": float | null, "clip_score": float | null} | null,
          "frames": int,                    # frames sampled (strict)
          "detections": {"mean": float, "max": int, "per_frame": [int, ...]},
          "characters": {
            "<name>": {"similarity": float | null,   # mean similarity to their cast photos when matched
                       "frames_seen": int, "frames_missing": int, "duplicate_frames": int,
                       "flags": ["low_similarity" | "missing" | "duplicated", ...]}
          },
          "flags": ["stale" | "no_faces" | "extra_faces" | "<flag>:<name>", ...]
        }
      },
      "characters": {
        "<name>": {
          "shots": [shot id, ...],              # rendered shots the character is cast in
          "mean_similarity": float | null,      # over those shots
          "consistency": [{"a": id, "b": id, "similarity": float, "drift": bool}, ...],  # shot pairs
          "min_consistency": float | null,
          "flags": ["drift:<a>/<b>" | "<flag>:<shot id>", ...]
        }
      },
      "flag_count": int,
      "engines": {                               # every engine evaluated on this story, kept across runs
        "<engine>": {
          "shots": {"<shot id>": {"key": str, "signature": str, "evaluated": "<UTC ISO time>",
                                  "face_sim": float | null, "clip_score": float | null,   # strict
                                  "released": {...} | null,   # the shot's released scores
                                  "characters": {"<name>": float | null}}},
          "characters": {"<name>": {"mean_similarity": float | null, "shots": [shot id, ...]}}
        }
      }
    }

**Comparing engines** (``engines``): each evaluation files its shots' results under the engine that made
each clip, and keeps what earlier evaluations filed under other engines, as long as the shot is unchanged
(same prompt and cast: ``signature``) and the face backend is the same (numbers of different backends are not
comparable). Render the story with one engine, ``storyreel eval``, render it with another, ``storyreel eval``
again: both engines' numbers stand side by side, per shot and per person.

Flags: ``low_similarity`` (similarity below the threshold), ``missing`` (matched in fewer than half of
the frames with faces, or never), ``duplicated`` (two or more faces look most like the character, above
the threshold, in at least a quarter of the frames), ``no_faces`` (no face in any frame),
``extra_faces`` (more faces than cast on average), ``stale`` (the clip was rendered for another cast or
prompt than the story now has: re-render it), ``drift`` (the character's appearances in two shots
are less similar than the threshold).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ingredients_model.face_tools import box_iou
from storyreel.engines.select import resolve_model_dir
from storyreel.errors import StoryreelError
from storyreel.fsutil import atomic_write_json
from storyreel.project import Project
from storyreel.story import Story

EVAL_VERSION = 2
DEFAULT_FRAMES = 8

Progress = Callable[[str], None]


def eval_path(project: Project) -> Path:
    """``renders/eval.json``."""
    return project.eval_path


def read_eval(project: Project) -> dict[str, Any] | None:
    """The last evaluation of ``project``, or None when absent, unreadable or of another format version."""
    try:
        data = json.loads(eval_path(project).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == EVAL_VERSION else None


def report_header(version: int, backend, threshold: float) -> dict[str, Any]:
    """The fields every evaluation document starts with: format version, time, face backend, threshold."""
    return {
        "version": version,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "backend": backend.name,
        "backend_label": backend.label,
        "offline_fallback": backend.offline_fallback,
        "threshold": threshold,
    }


def reference_embedding(backend, project: Project, name: str, member) -> np.ndarray:
    """Mean embedding of the chosen face in each of a member's photos."""
    from storyreel.cast import resolve_face

    embeddings = []
    for photo in member.photos:
        resolved = resolve_face(Path(photo), member.face)
        chosen = (resolved.box.left, resolved.box.top, resolved.box.right, resolved.box.bottom)
        faces = backend.detect(resolved.image)
        if not faces:
            continue
        best = max(faces, key=lambda f: box_iou(f.box, chosen))
        if box_iou(best.box, chosen) < 0.2:
            continue
        embeddings.append(best.embedding)
    if not embeddings:
        raise StoryreelError(
            f"the {backend.name} face backend finds no face in the photos of {name}",
            f"check cast/{name}/ with `storyreel cast list`, or try --backend dlib",
        )
    return np.mean(np.stack(embeddings), axis=0)


def _clip_meta(project: Project, shot_id: str) -> dict[str, Any]:
    try:
        data = json.loads(project.clip_meta_path(shot_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _closest(backend, refs: list[np.ndarray], embedding: np.ndarray, threshold: float) -> int | None:
    """Index of the reference most similar to ``embedding`` if at least ``threshold``, else None."""
    values = [backend.similarity(ref, embedding) for ref in refs]
    best = int(np.argmax(values)) if values else None
    return best if best is not None and values[best] >= threshold else None


def evaluate_frames(backend, frames, refs: list[np.ndarray], cast: list[str], threshold: float):
    """One clip's entry of ``eval.json`` (``frames``: sampled images; ``refs``: the cast's reference
    embeddings, left to right) and, per character, the mean embedding of the faces matched to them."""
    from ingredients_model.metrics.face_similarity import clip_face_similarity

    result = clip_face_similarity(backend, refs, frames)
    summary = result.summary
    with_faces = max(summary.frames_with_faces, 1)
    characters: dict[str, Any] = {}
    appearance: dict[str, np.ndarray] = {}
    shot_flags: list[str] = []
    # a character is duplicated in a frame when two or more faces look most like them (above the threshold)
    look_alikes = np.zeros(len(cast), dtype=int)
    for faces in result.detections:
        owners = [_closest(backend, refs, face.embedding, threshold) for face in faces]
        look_alikes += np.array([owners.count(i) >= 2 for i in range(len(cast))], dtype=int)
    for index, name in enumerate(cast):
        duplicates = int(look_alikes[index])
        seen = summary.frames - summary.frames_missing[index]
        similarity = summary.per_ref[index]
        flags = []
        if seen == 0 or seen < with_faces / 2:
            flags.append("missing")
        if similarity is not None and similarity < threshold:
            flags.append("low_similarity")
        if duplicates and duplicates >= max(1, math.ceil(summary.frames / 4)):
            flags.append("duplicated")
        characters[name] = {
            "similarity": _round(similarity),
            "frames_seen": seen,
            "frames_missing": summary.frames_missing[index],
            "duplicate_frames": duplicates,
            "flags": flags,
        }
        shot_flags += [f"{flag}:{name}" for flag in flags]
        matched = result.matched_embeddings(index)
        if matched:
            appearance[name] = np.mean(np.stack(matched), axis=0)
    if summary.frames_with_faces == 0:
        shot_flags.insert(0, "no_faces")
    elif summary.mean_detections > len(cast):
        shot_flags.insert(0, "extra_faces")
    entry = {
        "status": "ok",
        "frames": summary.frames,
        "face_sim": _round(summary.face_sim),
        "detections": {
            "mean": _round(summary.mean_detections),
            "max": summary.max_detections,
            "per_frame": [fm.num_faces for fm in result.frames],
        },
        "characters": characters,
        "flags": shot_flags,
    }
    return entry, appearance


def evaluate_story(
    story: Story,
    project: Project,
    *,
    backend: str = "auto",
    model_dir: Path | None = None,
    clip_dir: Path | None = None,
    frames: int = DEFAULT_FRAMES,
    threshold: float | None = None,
    device: str = "cpu",
    protocol: str = "both",
    face_models: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate every rendered shot of ``story``; returns the ``eval.json`` document (see module docstring).

    ``model_dir``: the model folder whose ``face_encoder/`` holds the ArcFace weights (``--model``, else the
    story's ``defaults.model``, else ``$STORYREEL_MODEL``). ``threshold`` overrides the backend's
    same-person threshold. ``protocol``: released, strict or both; ``face_models``: buffalo_l's folder for
    the released protocol (default: the model folder's, then insightface's own). With ``both``, a released
    protocol whose face model is missing is reported as not computed; asked for alone, it raises.
    """
    from ingredients_model.metrics.face_similarity import load_face_backend
    from ingredients_model.metrics.protocols import expand_protocol
    from ingredients_model.metrics.video import sample_video_frames

    if not any(project.clip_path(shot.id).is_file() for shot in story.shots):
        raise StoryreelError(
            f"no rendered shots to evaluate in {project.renders_dir}",
            f"render them first: storyreel render {project.story_path}",
        )
    say = progress or (lambda _message: None)
    model_dir, _ = resolve_model_dir(model_dir, story)
    face_dir = model_dir / "face_encoder" if model_dir is not None else None
    face_backend = load_face_backend(backend, face_dir, device=device)
    threshold = face_backend.same_person_threshold if threshold is None else float(threshold)
    scorer = None
    if clip_dir is not None:
        from ingredients_model.metrics.clip_score import ClipScorer

        scorer = ClipScorer(Path(clip_dir), device=device)
    chosen = expand_protocol(protocol)
    protocols = {name: _protocol_entry(name) for name in chosen}
    if "strict" in protocols:
        protocols["strict"].update(face_model=face_backend.label, frames=frames, computed=True)
    released = (
        _ReleasedProtocol.load(protocols, model_dir, face_models, device) if "released" in chosen else None
    )

    refs: dict[str, np.ndarray] = {}
    shots: dict[str, Any] = {}
    appearances: dict[str, dict[str, np.ndarray]] = {name: {} for name in story.cast}
    for shot in story.shots:
        clip = project.clip_path(shot.id)
        meta = _clip_meta(project, shot.id)
        job = meta.get("job") if isinstance(meta.get("job"), dict) else {}
        cast = list(job.get("cast") or shot.cast)
        base = {
            "clip": clip.relative_to(project.root).as_posix(),
            "key": meta.get("key") or job.get("key"),
            "engine": meta.get("engine") or job.get("engine"),
            "cast": cast,
        }
        if not clip.is_file():
            shots[shot.id] = {**base, "status": "not_rendered", "flags": ["not_rendered"]}
            continue
        if any(name not in story.cast for name in cast):
            shots[shot.id] = {**base, "status": "stale", "flags": ["stale"]}
            continue
        for name in cast:
            if name not in refs:
                say(f"reference faces of {name}")
                refs[name] = reference_embedding(face_backend, project, name, story.cast[name])
        say(f"shot {shot.id}")
        images = sample_video_frames(clip, num=frames)
        entry, appearance = evaluate_frames(face_backend, images, [refs[n] for n in cast], cast, threshold)
        prompt = job.get("prompt") or shot.resolved_prompt(story)
        scores: dict[str, Any] = {}
        if "released" in protocols:
            scores["released"] = released.score(story, cast, clip, prompt, scorer) if released else None
        if "strict" in protocols:
            strict_face = entry["face_sim"]
            strict_clip = scorer.score(images, prompt) if scorer is not None else None
            scores["strict"] = {"face_sim": _round(strict_face), "clip_score": _round(strict_clip)}
        entry = {**scores, **{k: v for k, v in entry.items() if k != "face_sim"}}
        if cast != list(shot.cast) or job.get("prompt", shot.resolved_prompt(story)) != shot.resolved_prompt(
            story
        ):
            entry["flags"].insert(0, "stale")
        shots[shot.id] = {**base, **entry}
        for name, embedding in appearance.items():
            appearances[name][shot.id] = embedding

    characters = _consistency(story, shots, appearances, face_backend, threshold)
    flag_count = sum(len(s["flags"]) for s in shots.values() if s["status"] == "ok")
    flag_count += sum(1 for c in characters.values() for f in c["flags"] if f.startswith("drift"))
    return {
        **report_header(EVAL_VERSION, face_backend, threshold),
        "frames_per_shot": frames,
        "clip_model": str(clip_dir) if clip_dir is not None else None,
        "protocols": protocols,
        "shots": shots,
        "characters": characters,
        "flag_count": flag_count,
        "engines": compare_engines(story, shots, face_backend.name, read_eval(project)),
    }


def shot_signature(story: Story, shot_id: str) -> str:
    """What an engine comparison holds fixed for a shot: its prompt (resolved) and cast (sha256, 16 hex)."""
    shot = next(s for s in story.shots if s.id == shot_id)
    text = json.dumps([shot.resolved_prompt(story), list(shot.cast or [])], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def compare_engines(
    story: Story, shots: dict[str, Any], backend: str, previous: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``engines`` section: this evaluation's results by engine, merged with ``previous`` (see the
    module docstring for what is kept)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    signatures = {shot.id: shot_signature(story, shot.id) for shot in story.shots}
    filed: dict[str, dict[str, Any]] = {}
    if previous is not None and previous.get("backend") == backend:
        for engine, data in (previous.get("engines") or {}).items():
            for shot_id, entry in (data.get("shots") or {}).items():
                if isinstance(entry, dict) and entry.get("signature") == signatures.get(shot_id):
                    filed.setdefault(engine, {})[shot_id] = entry
    for shot_id, shot in shots.items():
        if shot["status"] != "ok" or not shot.get("engine") or "stale" in shot["flags"]:
            continue
        filed.setdefault(shot["engine"], {})[shot_id] = {
            "key": shot["key"],
            "signature": signatures[shot_id],
            "evaluated": now,
            "face_sim": (shot.get("strict") or {}).get("face_sim"),
            "clip_score": (shot.get("strict") or {}).get("clip_score"),
            "released": shot.get("released"),
            "characters": {name: c["similarity"] for name, c in shot["characters"].items()},
        }
    engines: dict[str, Any] = {}
    for engine in sorted(filed):
        entries = {shot.id: filed[engine][shot.id] for shot in story.shots if shot.id in filed[engine]}
        people: dict[str, Any] = {}
        for name in story.cast:
            cast_in = [sid for sid, e in entries.items() if name in e["characters"]]
            values = [entries[sid]["characters"][name] for sid in cast_in]
            values = [v for v in values if v is not None]
            if cast_in:
                people[name] = {
                    "mean_similarity": _round(float(np.mean(values))) if values else None,
                    "shots": cast_in,
                }
        engines[engine] = {"shots": entries, "characters": people}
    return engines


def _protocol_entry(name: str) -> dict[str, Any]:
    from ingredients_model.metrics.protocols import PROTOCOL_LABELS

    return {"label": PROTOCOL_LABELS[name], "face_model": None, "frames": 0, "computed": False, "notes": []}


class _ReleasedProtocol:
    """The public scripts' rules on a shot (:mod:`ingredients_model.metrics.released`): buffalo_l, and
    torchvision's Inception for the per-frame "FID" when torchvision and its weights are there."""

    def __init__(self, app, features):
        self.app, self.features = app, features
        self.refs: dict[tuple[str, str], Any] = {}

    @classmethod
    def load(cls, protocols: dict, model_dir: Path | None, face_models: Path | None, device: str):
        from ingredients_model.errors import IngredientsError
        from ingredients_model.metrics import released

        entry = protocols["released"]
        try:
            folder = released.find_buffalo_l(face_models, model_dir)
            app = released.load_face_analysis(folder, device=device)
        except IngredientsError as err:
            if len(protocols) == 1:
                raise StoryreelError.from_error(err) from err
            entry["notes"].append(f"not computed: {err.message}")
            return None
        features = None
        try:
            features = released.torchvision_inception(released.find_inception_weights(), device=device)
        except IngredientsError as err:
            entry["notes"].append(f"FID not computed: {err.message}")
        entry.update(
            face_model=f"insightface buffalo_l from {folder}, det_size {released.DET_SIZE}",
            frames=released.NUM_FRAMES,
            computed=True,
        )
        return cls(app, features)

    def _references(self, story: Story, name: str) -> list:
        """One reference per cast photo: the chosen face, cut out with room around it."""
        from ingredients_model.errors import IngredientsError
        from ingredients_model.metrics import released
        from storyreel.cast import resolve_face

        found = []
        for photo in story.cast[name].photos:
            key = (name, str(photo))
            if key not in self.refs:
                face = resolve_face(Path(photo), story.cast[name].face)
                box = face.box
                w, h = box.right - box.left, box.bottom - box.top
                crop = face.image.crop(
                    (max(0, box.left - w), max(0, box.top - h), box.right + w, box.bottom + h)
                )
                try:
                    self.refs[key] = released.reference_face(self.app, crop, what=f"photo {photo} of {name}")
                except IngredientsError as err:
                    raise StoryreelError(
                        f"buffalo_l finds no face in {photo} of {name}",
                        "check the photo, or use --protocol strict",
                    ) from err
            found.append(self.refs[key])
        return found

    def score(self, story: Story, cast: list[str], clip: Path, prompt: str, scorer) -> dict[str, Any] | None:
        from ingredients_model.metrics import released

        refs = [ref for name in cast for ref in self._references(story, name)]
        if not refs:
            return None
        result = released.score_video(self.app, refs, clip, self.features)
        clip_score = released.clip_score_video(scorer, clip, prompt) if scorer is not None else None
        return {
            "face_sim": _round(result.face_sim),
            "clip_score": _round(clip_score),
            "fid": _round(result.fid),
            "frames": result.frames,
            "frames_without_faces": result.frames_without_faces,
        }


def _consistency(story, shots, appearances, backend, threshold: float) -> dict[str, Any]:
    """Per character: mean similarity over shots, and pairwise similarity of their appearances."""
    characters: dict[str, Any] = {}
    for name in story.cast:
        cast_in = [sid for sid, s in shots.items() if s["status"] == "ok" and name in s["cast"]]
        if not cast_in:
            continue
        values = [shots[sid]["characters"][name]["similarity"] for sid in cast_in]
        values = [v for v in values if v is not None]
        flags = [f"{flag}:{sid}" for sid in cast_in for flag in shots[sid]["characters"][name]["flags"]]
        pairs = []
        seen = appearances[name]
        for a, b in itertools.combinations([sid for sid in cast_in if sid in seen], 2):
            similarity = backend.similarity(seen[a], seen[b])
            drift = similarity < threshold
            pairs.append({"a": a, "b": b, "similarity": _round(similarity), "drift": drift})
            if drift:
                flags.append(f"drift:{a}/{b}")
        characters[name] = {
            "shots": cast_in,
            "mean_similarity": _round(float(np.mean(values))) if values else None,
            "consistency": pairs,
            "min_consistency": min((p["similarity"] for p in pairs), default=None),
            "flags": flags,
        }
    return characters


def write_eval(project: Project, report: dict[str, Any]) -> Path:
    """Write ``report`` to ``renders/eval.json`` atomically; returns the path."""
    path = eval_path(project)
    atomic_write_json(path, report)
    return path
