"""The review page (renders/index.html) and contact sheet (renders/contact_sheet.png) of a project.

The page is static and works offline: inline CSS, relative links only, no scripts from anywhere. Each
shot shows where it sits in the reel and links there: the link opens the reel at that time (a media
fragment, ``reel.mp4#t=START,END``) without JavaScript; with it, a few inline lines seek the page's
player instead.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jinja2
from PIL import Image, ImageDraw, ImageFont

from storyreel.errors import StoryreelError
from storyreel.ffmpeg_tools import ffmpeg_exe, find_font, probe_video, stderr_tail
from storyreel.fsutil import atomic_path, atomic_write_text
from storyreel.reel import ReelResult, Segment, vtt_escape
from storyreel.reel_record import recorded_reel, reel_timeline

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
    metrics: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def extract_thumbnails(
    clip: Path, count: int = THUMBS_PER_CLIP, width: int = THUMB_WIDTH
) -> list[Image.Image]:
    """``count`` frames spread evenly over ``clip``, scaled to ``width`` (one ffmpeg call, no temp files)."""
    info = probe_video(clip)
    height = max(2, round(info.height * width / info.width / 2) * 2)
    count = max(1, min(count, info.frames))
    picks = sorted({round(k * (info.frames - 1) / max(1, count - 1)) for k in range(count)})
    select = "+".join(f"eq(n\\,{n})" for n in picks)
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(clip), "-vf",
           f"select={select},scale={width}:{height}:flags=bicubic", "-fps_mode", "passthrough",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, check=False)
    size = width * height * 3
    if proc.returncode != 0 or len(proc.stdout) < size:
        raise StoryreelError(f"could not read frames of {clip}:\n{stderr_tail(proc.stderr)}")
    data = proc.stdout
    return [
        Image.frombytes("RGB", (width, height), data[i : i + size])
        for i in range(0, len(data) - size + 1, size)
    ]


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


def _flatten(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Nested metrics → (label, formatted value) rows, e.g. ``alice / face_similarity``."""
    if isinstance(value, dict) and depth < 4:
        rows = []
        for key, item in value.items():
            rows += _flatten(item, f"{prefix} / {key}" if prefix else str(key), depth + 1)
        return rows
    if isinstance(value, list) and depth < 4 and all(isinstance(v, dict) for v in value):
        rows = []
        for index, item in enumerate(value):
            name = str(item.get("name") or item.get("character") or index + 1)
            rest = {k: v for k, v in item.items() if k not in ("name", "character")}
            rows += _flatten(rest, f"{prefix} / {name}" if prefix else name, depth + 1)
        return rows
    if isinstance(value, float):
        return [(prefix, f"{value:.3f}")]
    if isinstance(value, list):
        return [(prefix, ", ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in value))]
    return [(prefix, "—" if value is None else str(value))]


def _shot_metrics(evaluation: Any, shot_id: str) -> list[tuple[str, str]]:
    if not isinstance(evaluation, dict):
        return []
    shots = evaluation.get("shots", evaluation)
    if isinstance(shots, list):
        matches = [
            s
            for s in shots
            if isinstance(s, dict) and shot_id in (s.get("id"), s.get("shot_id"), s.get("shot"))
        ]
        entry = (
            {k: v for k, v in matches[0].items() if k not in ("id", "shot_id", "shot")} if matches else None
        )
    else:
        entry = shots.get(shot_id) if isinstance(shots, dict) else None
    return _flatten(entry) if entry is not None else []


def _meta_summary(meta: dict[str, Any], story_seed: int | None) -> list[tuple[str, str]]:
    job = meta.get("job") if isinstance(meta.get("job"), dict) else {}

    def pick(name: str) -> Any:
        return meta.get(name, job.get(name))

    rows: list[tuple[str, str]] = []
    seed = pick("seed") if pick("seed") is not None else story_seed
    rows.append(("seed", "derived from the story seed" if seed is None else str(seed)))
    for name in ("engine", "key"):
        if pick(name) is not None:
            rows.append((name, str(pick(name))))
    for name in ("frames", "fps", "width", "height", "steps", "guidance"):
        if pick(name) is not None:
            rows.append((name, str(pick(name))))
    if isinstance(pick("render_seconds"), int | float):
        rows.append(("render time", f"{pick('render_seconds'):.2f} s"))
    timings = pick("timings")
    if isinstance(timings, dict):
        rows += [
            (f"time / {k}", f"{v:.2f} s" if isinstance(v, int | float) else str(v))
            for k, v in timings.items()
        ]
    peak = pick("peak_memory_bytes")
    if isinstance(peak, int | float):
        rows.append(("peak memory", f"{peak / 2**20:.0f} MiB ({pick('peak_memory_kind') or 'memory'})"))
    versions = pick("versions")
    if isinstance(versions, dict):
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return rows


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
    """Gather thumbnails (written to renders/thumbs/), faces, clip metadata and metrics for every shot."""
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
        review.metrics = _shot_metrics(evaluation, shot.id)
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


def _captions_track(reel: Path, renders: Path) -> str | None:
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
    atomic_write_text(renders / CAPTIONS_VTT, "WEBVTT\n\n" + "\n\n".join(cues) + "\n")
    return CAPTIONS_VTT


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


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("storyreel", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template(REVIEW_TEMPLATE)


def render_html(
    story: Story,
    reviews: list[ShotReview],
    renders: Path,
    reel: Path | None,
    timeline: tuple[int, list[Segment]] | None = None,
) -> str:
    """The review page's HTML, from ``templates/review.html.j2`` (autoescaped: every story-provided text
    is escaped; every link is relative to ``renders``).

    ``timeline`` (reel fps, segments) adds each shot's time in the reel and a link that plays it there.
    """
    has_reel = reel is not None and reel.is_file()
    starts = {seg.shot_id: seg for seg in timeline[1]} if timeline and has_reel else {}
    player = None
    if has_reel:
        poster = next((r.thumbs[0] for r in reviews if r.thumbs), None)
        player = {
            "src": _rel(reel, renders),
            "name": reel.name,
            "kind": "webm" if reel.suffix.lower() == ".webm" else "mp4",
            "poster": _rel(poster, renders) if poster else None,
            "track": _captions_track(reel, renders),
        }
    shots = []
    for r in reviews:
        job = r.meta.get("job") if isinstance(r.meta.get("job"), dict) else {}
        model_prompt = job.get("prompt") if isinstance(job.get("prompt"), str) else None
        shots.append(
            {
                "id": r.shot_id,
                "engine": r.meta.get("engine") if isinstance(r.meta.get("engine"), str) else None,
                "caption": r.caption,
                "seek": _seek(starts[r.shot_id], timeline[0], _rel(reel, renders))
                if r.shot_id in starts
                else None,
                "thumbs": [_rel(t, renders) for t in r.thumbs],
                "clip": _rel(r.clip, renders) if r.clip else "",
                "prompt": r.prompt,
                "model_prompt": model_prompt if model_prompt != r.prompt else None,
                "faces": [(name, _rel(path, renders) if path else None) for name, path in r.faces],
                "render": _meta_summary(r.meta, r.seed),
                "metrics": r.metrics,
                "problems": r.problems,
            }
        )
    return _template().render(
        title=story.title,
        size=story.output.size,
        fps=story.output.fps,
        reviewed=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        reel=player,
        contact_sheet=CONTACT_SHEET,
        shots=shots,
        seeks=bool(starts),
    )


def write_review(story: Story, project: Project, *, reel: Path | ReelResult | None = None) -> Path:
    """Write renders/index.html and renders/contact_sheet.png (thumbnails under renders/thumbs/).

    ``reel``: a fresh :class:`~storyreel.reel.ReelResult` (its timeline is used), a reel file, or None
    for the last assembled reel (else the story's ``output.file``); for a file the timeline comes from
    the record of the last assembly or is planned again from the clips. Reads renders/<id>.json (job,
    key, engine, timings) and renders/eval.json when present; missing or unreadable pieces are shown
    as notes on the page, never as errors.
    """
    renders = Path(project.renders_dir)
    reviews = collect_reviews(story, project)
    write_contact_sheet(story, reviews, renders / CONTACT_SHEET)
    page = Path(project.review_path)
    if isinstance(reel, ReelResult):
        reel_path, timeline = Path(reel.path), (reel.fps, reel.segments)
    else:
        reel_path = Path(reel) if reel else recorded_reel(project) or Path(project.reel_path)
        timeline = reel_timeline(story, project, reel_path)
    atomic_write_text(page, render_html(story, reviews, renders, reel_path, timeline))
    return page
