"""The review page (``index.html``) and contact sheet (``contact_sheet.png``) of a story's view.

The page is static and works offline: inline CSS, relative links only, no scripts from anywhere. It
shows every format's reel with a sharp poster frame (:mod:`storyreel.poster`), and how each clip fills
it (scaled, a face-following crop, or a blurred fill, with the reason). Each shot shows where it sits in
the first reel and links there: the link opens the reel at that time (a media fragment,
``reel.mp4#t=START,END``) without JavaScript; with it, a few inline lines seek the page's player instead.
Eval results appear in plain words (:mod:`storyreel.quality`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jinja2
from PIL import Image, ImageDraw, ImageFont

from storyreel.errors import StoryreelError
from storyreel.ffmpeg_tools import find_font, probe_video, read_frames
from storyreel.fsutil import atomic_path, atomic_write_text
from storyreel.poster import write_poster
from storyreel.quality import protocol_scores, shot_notes, shot_verdicts
from storyreel.reel import ReelResult, Segment, vtt_escape
from storyreel.reel_record import is_recorded, recorded_reels, reel_timeline

if TYPE_CHECKING:
    from storyreel.project import Project
    from storyreel.story import Story

THUMBS_PER_CLIP = 4
THUMB_WIDTH = 192
FACE_SIZE = 96
CONTACT_SHEET = "contact_sheet.png"
CAPTIONS_VTT = "review-captions.vtt"
REVIEW_TEMPLATE = "review.html.j2"


@dataclass
class ShotReview:
    """Everything the page shows about one shot."""

    shot_id: str
    prompt: str
    caption: str | None
    clip: Path | None
    seed: int | None = None
    thumbs: list[Path] = field(default_factory=list)
    faces: list[tuple[str, Path | None]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    people: list[tuple[str, str, str]] = field(default_factory=list)
    """(name, good/borderline/poor/unknown, sentence) per person, from the last eval."""
    findings: list[str] = field(default_factory=list)
    """Shot-level eval findings in words."""
    scores: list[tuple[str, str]] = field(default_factory=list)
    """(protocol label, its scores in words) per evaluated protocol (released, strict)."""
    problems: list[str] = field(default_factory=list)


def extract_thumbnails(
    clip: Path, count: int = THUMBS_PER_CLIP, width: int = THUMB_WIDTH
) -> list[Image.Image]:
    """``count`` frames spread evenly over ``clip``, scaled to ``width`` (one ffmpeg call, no temp files)."""
    frames = probe_video(clip).frames
    count = max(1, min(count, frames))
    return read_frames(clip, [round(k * (frames - 1) / max(1, count - 1)) for k in range(count)], width)


def _save_image(image: Image.Image, path: Path, fmt: str) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return path


def _read_json(path: Path) -> tuple[Any, str | None]:
    if not path.is_file():
        return None, None
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as err:
        return None, f"{path.name} is unreadable ({err})"


def _shot_quality(
    evaluation: Any, shot_id: str
) -> tuple[list[tuple[str, str, str]], list[str], list[tuple[str, str]]]:
    """Per person (name, label, sentence), shot-level findings and each protocol's scores (label, words)
    of ``shot_id`` in ``evaluation``."""
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("shots"), dict):
        return [], [], []
    entry = evaluation["shots"].get(shot_id)
    if not isinstance(entry, dict):
        return [], [], []
    people = [(v.name, v.label, v.sentence) for v in shot_verdicts(entry, evaluation)]
    return people, shot_notes(entry), protocol_scores(entry, evaluation)


def _meta_summary(meta: dict[str, Any], story_seed: int | None) -> tuple[list[tuple[str, str]], list]:
    """(plain rows, technical rows) about how a clip was rendered."""
    job = meta.get("job") if isinstance(meta.get("job"), dict) else {}

    def pick(name: str) -> Any:
        return meta.get(name, job.get(name))

    rows: list[tuple[str, str]] = []
    if pick("engine") is not None:
        rows.append(("engine", str(pick("engine"))))
    seed = pick("seed") if pick("seed") is not None else story_seed
    rows.append(("seed", "derived from the story seed" if seed is None else str(seed)))
    if all(pick(n) is not None for n in ("width", "height", "frames", "fps")):
        rows.append(
            ("clip", f"{pick('width')}x{pick('height')}, {pick('frames')} frames at {pick('fps')} fps")
        )
    if pick("steps") is not None:
        rows.append(("sampling", f"{pick('steps')} steps, guidance {pick('guidance')}"))
    if isinstance(pick("render_seconds"), int | float):
        rows.append(("render time", f"{pick('render_seconds'):.1f} s"))
    peak = pick("peak_memory_bytes")
    if isinstance(peak, int | float):
        rows.append(("peak memory", f"{peak / 2**20:.0f} MiB ({pick('peak_memory_kind') or 'memory'})"))
    technical: list[tuple[str, str]] = []
    if pick("key") is not None:
        technical.append(("key", str(pick("key"))))
    timings = pick("timings")
    if isinstance(timings, dict):
        technical += [
            (f"time / {k}", f"{v:.2f} s" if isinstance(v, int | float) else str(v))
            for k, v in timings.items()
        ]
    versions = pick("versions")
    if isinstance(versions, dict):
        technical.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return rows, technical


def _face_images(story: Story, project: Project, thumbs_dir: Path) -> dict[str, Path | None]:
    """Cast face crops saved as thumbs/cast-<name>.jpg; None for anyone whose face cannot be cropped."""
    try:
        from storyreel.cast import face_crop
    except ImportError:
        return dict.fromkeys(story.cast)
    from ingredients_model.errors import IngredientsError

    faces: dict[str, Path | None] = {}
    for name, member in story.cast.items():
        try:
            crop = face_crop(project, name, member)
        except (StoryreelError, IngredientsError, OSError):
            faces[name] = None
            continue
        crop = crop.convert("RGB").resize((FACE_SIZE, FACE_SIZE), Image.LANCZOS)
        faces[name] = _save_image(crop, thumbs_dir / f"cast-{name}.jpg", "JPEG")
    return faces


def collect_reviews(story: Story, project: Project) -> list[ShotReview]:
    """Gather thumbnails (written to <view>/thumbs/), faces, clip metadata and eval results of every shot."""
    renders = Path(project.renders_dir)
    thumbs_dir = renders / "thumbs"
    evaluation, eval_problem = _read_json(project.eval_path)
    faces = _face_images(story, project, thumbs_dir)
    reviews = []
    for shot in story.shots:
        clip = Path(project.clip_path(shot.id))
        review = ShotReview(shot.id, shot.prompt, shot.caption, clip if clip.is_file() else None, shot.seed)
        meta, problem = _read_json(Path(project.clip_meta_path(shot.id)))
        review.meta = meta if isinstance(meta, dict) else {}
        review.problems += [problem] if problem else []
        if meta is None and review.clip is not None and not problem:
            review.problems.append(f"no {project.clip_meta_path(shot.id).name} next to the clip")
        if review.clip is None:
            review.problems.append("not rendered yet — run `storyreel render`")
        else:
            try:
                images = extract_thumbnails(clip)
            except StoryreelError as err:
                review.problems.append(f"clip unreadable: {err.message.splitlines()[0]}")
                images = []
            for k, image in enumerate(images, start=1):  # a write that fails (full disk) stops the page
                review.thumbs.append(_save_image(image, thumbs_dir / f"{shot.id}-{k}.jpg", "JPEG"))
        review.faces = [(name, faces.get(name)) for name in shot.cast or []]
        review.people, review.findings, review.scores = _shot_quality(evaluation, shot.id)
        if eval_problem:
            review.problems.append(eval_problem)
        reviews.append(review)
    return reviews


def write_contact_sheet(story: Story, reviews: list[ShotReview], path: Path) -> Path:
    """One row per shot: its id and caption, then its thumbnails (PNG, written atomically)."""
    thumb_h = round(THUMB_WIDTH * story.output.height / story.output.width)
    label_w, pad = 220, 8
    width = label_w + THUMBS_PER_CLIP * (THUMB_WIDTH + pad) + pad
    header = 44
    height = header + len(reviews) * (thumb_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (24, 26, 32))
    draw = ImageDraw.Draw(sheet)
    font_file = find_font()

    def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
        return ImageFont.truetype(str(font_file), size) if font_file else ImageFont.load_default()

    draw.text((pad, 10), story.title, fill=(240, 240, 240), font=font(22))
    for row, review in enumerate(reviews):
        top = header + row * (thumb_h + pad)
        draw.text((pad, top + 4), f"{row + 1}. {review.shot_id}", fill=(240, 240, 240), font=font(15))
        if review.caption:
            draw.text((pad, top + 26), review.caption[:30], fill=(170, 176, 190), font=font(12))
        if not review.thumbs:
            draw.text((label_w, top + thumb_h // 2 - 8), "not rendered", fill=(200, 120, 90), font=font(14))
        for col, thumb in enumerate(review.thumbs):
            with Image.open(thumb) as image:
                image = image.convert("RGB")
                image.thumbnail((THUMB_WIDTH, thumb_h))
                sheet.paste(image, (label_w + col * (THUMB_WIDTH + pad), top))
    return _save_image(sheet, path, "PNG")


def _rel(target: Path, base: Path) -> str:
    return quote(Path(os.path.relpath(target, base)).as_posix())


def _captions_track(reel: Path, renders: Path, label: str) -> str | None:
    """A WebVTT file for the page's <track>: the reel's .vtt sidecar, or its .srt converted."""
    vtt, srt = reel.with_suffix(".vtt"), reel.with_suffix(".srt")
    if vtt.is_file():
        return _rel(vtt, renders)
    if not srt.is_file():
        return None
    cues = []
    for block in srt.read_text(encoding="utf-8").strip().split("\n\n"):
        lines = block.split("\n")[1:]  # the cue number goes; WebVTT needs none
        if lines and "-->" in lines[0]:
            cues.append("\n".join([lines[0].replace(",", "."), *map(vtt_escape, lines[1:])]))
    name = f"{Path(CAPTIONS_VTT).stem}-{label}.vtt" if label else CAPTIONS_VTT
    atomic_write_text(renders / name, "WEBVTT\n\n" + "\n\n".join(cues) + "\n")
    return name


def _clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:05.2f}"


def _seek(segment: Segment, fps: int, reel_link: str) -> dict[str, str]:
    start, end = segment.start / fps, (segment.start + segment.frames) / fps
    return {
        "href": f"{reel_link}#t={start:.3f},{end:.3f}",
        "start": f"{start:.3f}",
        "span": f"{_clock(start)}–{_clock(end)}",
    }


@dataclass
class ReelView:
    """One format's reel as the page shows it (``segments``: where each shot sits, when known)."""

    label: str
    path: Path
    width: int
    height: int
    fps: int
    segments: list[Segment] | None = None
    framings: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    poster: Path | None = None


def reel_views(story: Story, project: Project, reels: list[ReelResult] | None = None) -> list[ReelView]:
    """The story's reels: fresh ``reels``, else those the last assembly wrote, else the formats' files
    that exist (their timelines planned again from the clips)."""
    if reels:
        return [
            ReelView(r.label, Path(r.path), r.width, r.height, r.fps, r.segments, r.framings, r.warnings)
            for r in reels
        ]
    views = []
    for entry, path in recorded_reels(project):
        timeline = reel_timeline(story, project, path)  # None when the file is not the recorded one
        try:
            size, fps = (int(entry["width"]), int(entry["height"])), int(entry["fps"])
        except (TypeError, KeyError, ValueError):
            continue
        same = timeline is not None and is_recorded(entry, path)
        views.append(
            ReelView(
                str(entry.get("label") or ""),
                path,
                *size,
                timeline[0] if timeline else fps,
                timeline[1] if timeline else None,
                dict(entry.get("framings") or {}) if same else {},
                list(entry.get("warnings") or []) if same else [],
            )
        )
    if views:
        return views
    for fmt in story.output.reel_formats:
        path = project.root / fmt.file
        if path.is_file():
            timeline = reel_timeline(story, project, path)
            segments = timeline[1] if timeline else None
            views.append(ReelView(fmt.label, path, fmt.width, fmt.height, fmt.fps, segments))
    return views


def write_poster_for(view: ReelView, renders: Path) -> Path | None:
    """The sharpest frame of the reel inside its shots, saved in ``renders`` as ``poster[-label].jpg``
    (kept while newer than the reel); None when the reel cannot be read."""
    name = f"poster-{view.label}.jpg" if view.label else "poster.jpg"
    path = renders / name
    try:
        if path.is_file() and path.stat().st_mtime_ns >= view.path.stat().st_mtime_ns:
            return path
        spans = [(s.start, s.start + s.frames) for s in view.segments or []]
        return write_poster(view.path, path, spans)
    except (StoryreelError, OSError):
        return None


@functools.cache
def page_template(name: str = REVIEW_TEMPLATE) -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("storyreel", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template(name)


_FRAMING_WORDS = {"fit": "scaled", "crop": "face-following crop", "fill": "blurred fill"}


def render_html(story: Story, reviews: list[ShotReview], renders: Path, reels: list[ReelView]) -> str:
    """The review page's HTML, from ``templates/review.html.j2`` (autoescaped: every story-provided text
    is escaped; every link is relative to ``renders``).

    Each reel gets a player; the first reel's timeline (when known) adds each shot's time in it and a
    link that plays it there.
    """
    first = reels[0] if reels else None
    starts = {seg.shot_id: seg for seg in first.segments or []} if first else {}
    players = []
    for view in reels:
        players.append(
            {
                "label": view.label or "reel",
                "size": f"{view.width}x{view.height}",
                "fps": view.fps,
                "portrait": view.height > view.width,
                "src": _rel(view.path, renders),
                "name": view.path.name,
                "kind": "webm" if view.path.suffix.lower() == ".webm" else "mp4",
                "poster": _rel(view.poster, renders) if view.poster else None,
                "track": _captions_track(view.path, renders, view.label),
                "framings": {
                    kind: [s for s, k in view.framings.items() if k == kind]
                    for kind in ("crop", "fill")
                    if kind in view.framings.values()
                },
                "notes": view.notes,
            }
        )
    shots = []
    for r in reviews:
        job = r.meta.get("job") if isinstance(r.meta.get("job"), dict) else {}
        model_prompt = job.get("prompt") if isinstance(job.get("prompt"), str) else None
        render, technical = _meta_summary(r.meta, r.seed)
        framing = [
            (view.label or "reel", _FRAMING_WORDS.get(view.framings.get(r.shot_id, "fit"), "scaled"))
            for view in reels
            if len(reels) > 1 or view.framings.get(r.shot_id, "fit") != "fit"
        ]
        shots.append(
            {
                "id": r.shot_id,
                "engine": r.meta.get("engine") if isinstance(r.meta.get("engine"), str) else None,
                "caption": r.caption,
                "seek": _seek(starts[r.shot_id], first.fps, _rel(first.path, renders))
                if first and r.shot_id in starts
                else None,
                "thumbs": [_rel(t, renders) for t in r.thumbs],
                "clip": _rel(r.clip, renders) if r.clip else "",
                "prompt": r.prompt,
                "model_prompt": model_prompt if model_prompt != r.prompt else None,
                "faces": [(name, _rel(path, renders) if path else None) for name, path in r.faces],
                "render": render,
                "technical": technical,
                "framing": framing,
                "people": r.people,
                "findings": r.findings,
                "scores": r.scores,
                "problems": r.problems,
            }
        )
    return page_template().render(
        title=story.title,
        variables=sorted(story.variables.items()),
        size=story.output.size,
        fps=story.output.fps,
        reviewed=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        reels=players,
        contact_sheet=CONTACT_SHEET,
        shots=shots,
        seeks=bool(starts),
    )


def write_review(story: Story, project: Project, *, reels: list[ReelResult] | None = None) -> Path:
    """Write the view's index.html and contact_sheet.png (thumbnails and posters beside them).

    ``reels``: fresh results (their timelines are used), or None for the reels the last assembly wrote
    (see :func:`reel_views`). Reads each clip's record (job, key, engine, timings) and the view's
    eval.json when present; missing or unreadable pieces are shown as notes on the page, never as errors.
    """
    renders = Path(project.renders_dir)
    reviews = collect_reviews(story, project)
    write_contact_sheet(story, reviews, renders / CONTACT_SHEET)
    views = reel_views(story, project, reels)
    for view in views:
        view.poster = write_poster_for(view, renders)
    page = Path(project.review_path)
    atomic_write_text(page, render_html(story, reviews, renders, views))
    return page
