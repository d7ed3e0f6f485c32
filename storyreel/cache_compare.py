"""`storyreel eval --compare-cache`: what a step cache costs in likeness and pixels, and saves in time.

Every chosen shot that has a step cache (its ``cache:`` in story.yaml, or ``--cache``) is rendered twice by
the model, with the same job and seed: with its cache, then without. The cached render runs first, so a
one-off warm-up of the first call (if any) counts against the cache. Both clips are kept for viewing in
``renders/cache-compare/<shot>.cached.mp4`` and ``<shot>.uncached.mp4``; the shot's own clip is untouched.

``renders/cache_compare.json`` (written atomically), format version 1::

    {
      "version": 1, "created": "<UTC ISO time>",
      "backend": str, "backend_label": str, "offline_fallback": bool,   # face backend, as `storyreel eval`
      "threshold": float, "frames_per_clip": int,                         # face frames sampled per clip
      "shots": {
        "<shot id>": {
          "cache": {"kind": ..., ...},              # the spec compared against no cache
          "cast": [name, ...],
          "cached" | "uncached": {
            "clip": "renders/cache-compare/<id>.<variant>.mp4",
            "render_seconds": float,                 # the whole render (identities and text were ready)
            "denoise_seconds": float,                # denoising and VAE decode: what a step cache shortens
            "face_sim": float | null,                # as `storyreel eval`: mean over frames of the minimum
            "characters": {"<name>": float | null}   # each person's similarity to their cast photos
          },
          "speedup": float,                          # uncached / cached denoise_seconds
          "psnr_db": float | null,                   # null: the two clips are identical
          "mean_abs_diff": float                     # in 8-bit levels, over every pixel of every frame
        }
      }
    }

The pixel metric is PSNR over all frames of both clips (8-bit RGB, ``10·log10(255² / MSE)``, computed with
scikit-image), with the mean absolute difference beside it: above about 40 dB the two clips look the same.
Face similarity uses the backends of ``storyreel eval`` (ArcFace when the model folder has it, else dlib).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from storyreel.engines.select import choose_engine, make_engine, resolve_model_dir
from storyreel.errors import StoryreelError
from storyreel.evaluate import DEFAULT_FRAMES, evaluate_frames, reference_embedding, report_header
from storyreel.fsutil import atomic_path, atomic_write_json
from storyreel.locking import DEFAULT_WAIT_SECONDS, ProjectLock
from storyreel.plan import Overrides, RenderJob, plan_story
from storyreel.project import Project
from storyreel.story import Story

COMPARE_VERSION = 1
VARIANTS = ("cached", "uncached")

Progress = Callable[[str], None]


def read_frames(path: Path) -> np.ndarray:
    """Every frame of a video as ``uint8 [frames, height, width, 3]``."""
    from ingredients_model.metrics.video import count_frames, sample_video_frames

    return np.stack([np.asarray(image) for image in sample_video_frames(path, num=count_frames(path))])


def pixel_difference(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float]:
    """PSNR in dB (None when identical) and mean absolute difference of two 8-bit clips of one shape."""
    from skimage.metrics import peak_signal_noise_ratio

    if a.shape != b.shape:
        raise StoryreelError(f"the clips differ in shape ({a.shape} and {b.shape}); render them again")
    difference = float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
    if difference == 0:
        return None, 0.0
    return float(peak_signal_noise_ratio(a, b, data_range=255)), difference


def _cached_jobs(jobs: list[RenderJob], only: Iterable[str] | None) -> list[RenderJob]:
    chosen = [job for job in jobs if job.cache is not None]
    without = [job.shot_id for job in jobs if job.cache is None]
    if only and without:
        raise StoryreelError(
            f"no step cache for shot(s) {', '.join(without)}: nothing to compare",
            hint="give one with --cache (e.g. --cache taylorseer) or `cache:` in story.yaml",
        )
    if not chosen:
        raise StoryreelError(
            "no shot of this story has a step cache: nothing to compare",
            hint="give one with --cache (e.g. --cache taylorseer or --cache-threshold 0.05), or set "
            "`cache:` in story.yaml",
        )
    return chosen


def compare_cache(
    story: Story,
    project: Project,
    *,
    overrides: Overrides | None = None,
    only: Iterable[str] | None = None,
    model_dir: Path | None = None,
    memory: str = "auto",
    backend: str = "auto",
    frames: int = DEFAULT_FRAMES,
    threshold: float | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Render each chosen shot with and without its step cache and compare them (see the module docstring).

    ``only``: shot ids (default: every shot with a cache). ``device``, ``backend``, ``frames`` and
    ``threshold`` are the face backend's, as in :func:`storyreel.evaluate.evaluate_story`; the model runs
    where ``storyreel render`` would run it. Returns the ``cache_compare.json`` document.
    """
    from ingredients_model.metrics.face_similarity import load_face_backend

    say = progress or (lambda _message: None)
    model_dir, source = resolve_model_dir(model_dir, story)
    choice = choose_engine("ingredients", model_dir, source)
    engine = make_engine(choice, memory=memory)
    jobs = _cached_jobs(plan_story(story, engine.spec(), only=only, overrides=overrides), only)
    face_backend = load_face_backend(backend, choice.model_dir / "face_encoder", device=device)
    threshold = face_backend.same_person_threshold if threshold is None else float(threshold)
    refs: dict[str, np.ndarray] = {}
    shots: dict[str, Any] = {}
    with ProjectLock(project.lock_path, wait=DEFAULT_WAIT_SECONDS, on_wait=say):
        say("loading the model")
        engine.load()
        engine.prepare([(job, project) for job in jobs])  # identities and prompts: ready before timing
        for job in jobs:
            for name in job.cast:
                if name not in refs:
                    say(f"reference faces of {name}")
                    refs[name] = reference_embedding(face_backend, project, name, story.cast[name])
            shots[job.shot_id] = _compare_shot(
                engine, job, project, face_backend, refs, frames, threshold, say
            )
    return {
        **report_header(COMPARE_VERSION, face_backend, threshold),
        "frames_per_clip": frames,
        "shots": shots,
    }


def _compare_shot(
    engine: Any,
    job: RenderJob,
    project: Project,
    face_backend: Any,
    refs: dict[str, np.ndarray],
    frames: int,
    threshold: float,
    say: Progress,
) -> dict[str, Any]:
    """Render ``job`` with its cache and without, and measure both clips (one ``shots`` entry)."""
    from ingredients_model.metrics.video import sample_video_frames

    entry: dict[str, Any] = {"cache": job.cache, "cast": list(job.cast)}
    pixels = {}
    uncached_job = job.model_copy(update={"cache": None}).with_key()
    for variant, each in zip(VARIANTS, (job, uncached_job), strict=True):
        clip = project.cache_compare_clip(job.shot_id, variant)

        def step(done: int, total: int, label: str = f"{job.shot_id} {variant}") -> None:
            say(f"{label}: step {done}/{total}")

        with atomic_path(clip) as tmp:
            result = engine.render(each, tmp, step, project=project)
        images = sample_video_frames(clip, num=frames)
        faces, _ = evaluate_frames(face_backend, images, [refs[n] for n in job.cast], job.cast, threshold)
        entry[variant] = {
            "clip": clip.relative_to(project.root).as_posix(),
            "render_seconds": round(result.seconds, 3),
            "denoise_seconds": round(result.timings["denoise_and_decode"], 3),
            "face_sim": faces["face_sim"],
            "characters": {name: faces["characters"][name]["similarity"] for name in job.cast},
        }
        pixels[variant] = read_frames(clip)
    psnr, difference = pixel_difference(pixels["cached"], pixels["uncached"])
    cached, uncached = entry["cached"]["denoise_seconds"], entry["uncached"]["denoise_seconds"]
    entry.update(
        speedup=round(uncached / cached, 3) if cached else None,
        psnr_db=None if psnr is None else round(psnr, 2),
        mean_abs_diff=round(difference, 4),
    )
    return entry


def write_cache_compare(project: Project, report: dict[str, Any]) -> Path:
    """Write ``report`` to ``renders/cache_compare.json`` atomically; returns the path."""
    atomic_write_json(project.cache_compare_path, report)
    return project.cache_compare_path
