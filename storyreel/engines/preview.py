"""The ``preview`` engine: a CPU storyboard animatic that needs no model weights.

Each shot is a panel: a background gradient whose colours come from the prompt's hash, the cast's face
crops left to right as framed cards (with their names), a header with the shot id, duration, caption
(only when the reel does not burn captions in, so it never shows twice) and prompt, and a gentle Ken
Burns camera move over the cards (direction from the shot's seed) in front of a distant background.
The bottom of the frame stays clear for the reel's burned captions. Frames are drawn with Pillow/numpy
and piped raw to ffmpeg; a 6 s shot at 720x480, 24 fps takes about a second on two cores.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import textwrap
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from storyreel.engines.base import RenderResult, StepProgress, rss_peak_bytes
from storyreel.engines.video import FrameWriter
from storyreel.plan import EngineSpec

if TYPE_CHECKING:
    from storyreel.plan import RenderJob
    from storyreel.project import Project

PREVIEW_VERSION = "2"  # bump whenever the drawing changes: it is part of every preview job key
OVERSCAN = 1.12  # layers are drawn this much larger than the frame, room for the camera to move


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's bundled font: identical on every machine, so the same job gives the same pixels.
    return ImageFont.load_default(size=size)


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _palette(prompt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two muted, dark-to-mid tones and a warm/cool light colour, all derived from the prompt."""
    rng = _rng("palette", prompt)
    hue = rng.random()
    shift = rng.uniform(0.06, 0.18) * rng.choice([-1, 1])

    def rgb(h: float, s: float, v: float) -> np.ndarray:
        return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255

    top = rgb(hue, rng.uniform(0.35, 0.55), rng.uniform(0.16, 0.26))
    bottom = rgb(hue + shift, rng.uniform(0.40, 0.60), rng.uniform(0.42, 0.58))
    light = rgb(hue + shift / 2, 0.25, 1.0)
    return top, bottom, light


def background(prompt: str, width: int, height: int) -> Image.Image:
    """A diagonal gradient with a soft light and a vignette, from the prompt's hash."""
    top, bottom, light = _palette(prompt)
    rng = _rng("light", prompt)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ys /= max(height - 1, 1)
    xs /= max(width - 1, 1)
    angle = rng.uniform(-0.5, 0.5)
    t = np.clip(ys * math.cos(angle) + (xs - 0.5) * math.sin(angle), 0, 1)[..., None]
    t = t * t * (3 - 2 * t)
    image = top * (1 - t) + bottom * t
    cx, cy = rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.4)
    glow = np.exp(-(((xs - cx) / 0.45) ** 2 + ((ys - cy) / 0.35) ** 2))[..., None]
    image = image + (light - image) * glow * 0.22
    vignette = 1 - 0.45 * (((xs - 0.5) / 0.75) ** 2 + ((ys - 0.5) / 0.75) ** 2)[..., None]
    image = image * np.clip(vignette, 0, 1)
    return Image.fromarray(np.clip(image + 0.5, 0, 255).astype(np.uint8), "RGB")


def _rounded_mask(size: tuple[int, int], radius: int) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, size[0] - 1, size[1] - 1), radius=radius, fill=255)
    return mask


def cast_layer(faces: list[tuple[str, Image.Image]], width: int, height: int) -> Image.Image:
    """Transparent layer with one framed card per cast member, left to right, names underneath."""
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    if not faces:
        return layer
    n = len(faces)
    gap = int(width * 0.035)
    band_top, band_bottom = int(height * 0.34), int(height * 0.80)  # between header and caption area
    label_size = max(10, int(height * 0.035))
    card_h = band_bottom - band_top - int(label_size * 1.8)
    card_w = min(int(card_h * 0.8), (int(width * 0.78) - gap * (n - 1)) // n)
    card_h = min(card_h, int(card_w * 1.25))
    total = n * card_w + (n - 1) * gap
    x = (width - total) // 2
    y = band_top + (band_bottom - band_top - card_h - int(label_size * 1.8)) // 2
    radius = max(4, card_w // 14)
    border = max(2, card_w // 60)
    shadow = Image.new("L", (width, height), 0)
    shadow_draw = ImageDraw.Draw(shadow)
    for i in range(n):
        cx = x + i * (card_w + gap)
        shadow_draw.rounded_rectangle(
            (cx + border * 2, y + border * 3, cx + card_w + border * 2, y + card_h + border * 3),
            radius=radius,
            fill=150,
        )
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(2, card_w // 25)))
    layer.putalpha(shadow)
    draw = ImageDraw.Draw(layer)
    font = _font(label_size)
    for i, (name, face) in enumerate(faces):
        cx = x + i * (card_w + gap)
        frame = Image.new("RGB", (card_w, card_h), (245, 242, 236))
        inner = (card_w - 2 * border, card_h - 2 * border)
        photo = ImageOps.fit(face.convert("RGB"), inner, Image.Resampling.LANCZOS, centering=(0.5, 0.4))
        frame.paste(photo, (border, border), _rounded_mask(inner, max(2, radius - border)))
        layer.paste(frame, (cx, y), _rounded_mask((card_w, card_h), radius))
        label = name.replace("_", " ").upper()
        tw = draw.textlength(label, font=font)
        draw.text(
            (cx + (card_w - tw) / 2, y + card_h + label_size * 0.5),
            label,
            font=font,
            fill=(255, 255, 255, 235),
            stroke_width=max(1, label_size // 14),
            stroke_fill=(0, 0, 0, 120),
        )
    return layer


def scene_layer(prompt: str, width: int, height: int) -> Image.Image:
    """For shots without cast: the prompt, large, on a translucent card in the middle of the frame."""
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    font = _font(max(10, int(height * 0.05)))
    lines = _ellipsize(textwrap.wrap(prompt, max(16, int(width * 0.62 / (font.size * 0.5)))), 4)
    draw = ImageDraw.Draw(layer)
    line_h = font.size * 1.35
    box_w = max(draw.textlength(line, font=font) for line in lines) + font.size * 2
    box_h = line_h * len(lines) + font.size * 1.4
    left, top = (width - box_w) / 2, height * 0.55 - box_h / 2
    draw.rounded_rectangle((left, top, left + box_w, top + box_h), radius=font.size // 2, fill=(0, 0, 0, 110))
    for i, line in enumerate(lines):
        x = (width - draw.textlength(line, font=font)) / 2
        draw.text((x, top + font.size * 0.7 + i * line_h), line, font=font, fill=(255, 255, 255, 240))
    return layer


def _ellipsize(lines: list[str], keep: int) -> list[str]:
    if len(lines) <= keep:
        return lines
    return [*lines[: keep - 1], lines[keep - 1].rstrip(" .,;") + " …"]


def header_layer(job: RenderJob, width: int, height: int) -> Image.Image:
    """Static overlay: shot id and duration, the caption, and the prompt (wrapped), over a dark band."""
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    pad = int(width * 0.035)
    small = _font(max(9, int(height * 0.032)))
    big = _font(max(12, int(height * 0.06)))
    body = _font(max(9, int(height * 0.036)))
    chars = max(20, int((width - 2 * pad) / (body.size * 0.5)))
    # without cast, the prompt is the picture (scene_layer); the header keeps only id and caption
    prompt_lines = _ellipsize(textwrap.wrap(job.prompt, chars), 3) if job.cast else []
    y = pad * 0.8
    lines: list[tuple[float, str, ImageFont.FreeTypeFont, tuple[int, int, int, int]]] = []
    lines.append((y, f"SHOT · {job.shot_id}", small, (255, 214, 120, 255)))
    y += small.size * 1.5
    if job.caption:
        lines.append((y, job.caption, big, (255, 255, 255, 255)))
        y += big.size * 1.3
    for line in prompt_lines:
        lines.append((y, line, body, (228, 228, 228, 235)))
        y += body.size * 1.3
    band = int(y + pad * 0.5)
    band_alpha = np.linspace(170, 0, max(band // 3, 1))
    alpha = np.concatenate([np.full(band, 170.0), band_alpha])[:height]
    shade = Image.fromarray(np.repeat(alpha[:, None], width, axis=1).astype(np.uint8), "L")
    layer.paste((8, 8, 12, 255), (0, 0, width, shade.height), shade)
    duration = f"{job.frames / job.fps:.1f} s"
    draw.text((width - pad - draw.textlength(duration, font=small), pad * 0.8), duration, font=small,
              fill=(255, 255, 255, 200))  # fmt: skip
    for top, text, font, fill in lines:
        draw.text((pad, top), text, font=font, fill=fill)
    return layer


@dataclass
class KenBurns:
    """Gentle camera motion: a slow zoom and drift, eased in and out, direction from the seed."""

    zoom_from: float
    zoom_to: float
    pan_from: tuple[float, float]
    pan_to: tuple[float, float]

    @classmethod
    def from_seed(cls, seed: int) -> KenBurns:
        rng = np.random.default_rng(seed)
        zoom = (1.0, 1.0 + rng.uniform(0.05, 0.08))
        if rng.random() < 0.5:
            zoom = zoom[::-1]
        angle = rng.uniform(0, 2 * math.pi)
        reach = rng.uniform(0.4, 0.9)
        start = (math.cos(angle) * reach, math.sin(angle) * reach * 0.6)
        return cls(zoom[0], zoom[1], start, (-start[0], -start[1]))

    def box(self, t: float, width: int, height: int, scale: float) -> tuple[float, float, float, float]:
        """The part of a layer ``scale`` times the frame size that the camera sees at ``t`` in [0, 1]."""
        e = t * t * (3 - 2 * t)
        zoom = self.zoom_from + (self.zoom_to - self.zoom_from) * e
        w, h = width / zoom, height / zoom
        slack_x, slack_y = (width * scale - w) / 2, (height * scale - h) / 2
        px = self.pan_from[0] + (self.pan_to[0] - self.pan_from[0]) * e
        py = self.pan_from[1] + (self.pan_to[1] - self.pan_from[1]) * e
        left, top = slack_x * (1 + px), slack_y * (1 + py)
        return (left, top, left + w, top + h)


class Animatic:
    """The frames of one preview shot (a pure function of the job and the face crops).

    The background is a distant, soft gradient and stays put; the camera moves over the cast cards
    (zoom + drift), and the header stays fixed on top. Only the cards' bounding box is resampled per
    frame, with sub-pixel source boxes so the motion is smooth.
    """

    def __init__(self, job: RenderJob, faces: list[tuple[str, Image.Image]]):
        self.job = job
        self.size = (job.width, job.height)
        self.background = background(job.prompt, *self.size)
        big = (round(job.width * OVERSCAN), round(job.height * OVERSCAN))
        cast = cast_layer(faces, *big) if faces else scene_layer(job.prompt, *big)
        self.cast_origin = (0, 0)
        self.cast: Image.Image | None = None
        bbox = cast.getbbox()
        if bbox is not None:
            margin = 4
            x0, y0 = max(bbox[0] - margin, 0), max(bbox[1] - margin, 0)
            x1, y1 = min(bbox[2] + margin, cast.width), min(bbox[3] + margin, cast.height)
            self.cast, self.cast_origin = cast.crop((x0, y0, x1, y1)), (x0, y0)
        header = header_layer(job, *self.size)
        band = header.getbbox()
        self.header = header.crop((0, 0, job.width, band[3])) if band else None
        self.camera = KenBurns.from_seed(job.seed)

    def frame(self, index: int) -> Image.Image:
        job = self.job
        image = self.background.copy()
        if self.cast is not None:
            t = index / max(job.frames - 1, 1)
            left, top, right, bottom = self.camera.box(t, *self.size, OVERSCAN)
            sx, sy = job.width / (right - left), job.height / (bottom - top)
            ox, oy = self.cast_origin
            # where the cards' box lands in the frame, widened to whole pixels and clipped to the frame
            x0 = max(math.floor((ox - left) * sx), 0)
            y0 = max(math.floor((oy - top) * sy), 0)
            x1 = min(math.ceil((ox + self.cast.width - left) * sx), job.width)
            y1 = min(math.ceil((oy + self.cast.height - top) * sy), job.height)
            if x1 > x0 and y1 > y0:
                src = (
                    max(left + x0 / sx - ox, 0.0),
                    max(top + y0 / sy - oy, 0.0),
                    min(left + x1 / sx - ox, float(self.cast.width)),
                    min(top + y1 / sy - oy, float(self.cast.height)),
                )
                cards = self.cast.resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR, box=src)
                image.paste(cards, (x0, y0), cards)
        if self.header is not None:
            image.paste(self.header, (0, 0), self.header)
        return image


def first_face(job: RenderJob, name: str) -> Image.Image:
    """The aligned face crop of ``name``'s first photo, as chosen in the job."""
    from storyreel.cast import photo_face_crop
    from storyreel.errors import StoryreelError

    if not job.photos.get(name):
        raise StoryreelError(f"cast member {name} has no photos", f"storyreel cast add PHOTO --name {name}")
    return photo_face_crop(job.photos[name][0], job.face_choices(name)[0])


class PreviewEngine:
    """CPU animatic engine (see module docstring); renders at the story's fps and size."""

    name = "preview"

    def spec(self) -> EngineSpec:
        return EngineSpec(name=self.name, version=PREVIEW_VERSION, uses_caption=True)

    def versions(self) -> dict[str, str]:
        import PIL

        return {"preview": PREVIEW_VERSION, "pillow": PIL.__version__, "numpy": np.__version__}

    def load(self) -> None:
        """Nothing to load: the preview needs no weights."""

    def render(
        self, job: RenderJob, output: Path, progress: StepProgress, *, project: Project
    ) -> RenderResult:
        started = time.perf_counter()
        faces = [(name, first_face(job, name)) for name in job.cast]
        animatic = Animatic(job, faces)
        prepared = time.perf_counter()
        every = max(1, job.frames // 24)
        with FrameWriter(output, job.width, job.height, job.fps, crf=20, preset="veryfast") as out:
            for i in range(job.frames):
                out.write(animatic.frame(i).tobytes())
                if (i + 1) % every == 0 or i + 1 == job.frames:
                    progress(i + 1, job.frames)
        done = time.perf_counter()
        return RenderResult(
            frames=job.frames,
            fps=job.fps,
            width=job.width,
            height=job.height,
            seconds=done - started,
            peak_memory_bytes=rss_peak_bytes(),
            peak_memory_kind="rss",
            timings={"prepare": prepared - started, "frames_and_encode": done - prepared},
        )
