"""Face-aware reframing: how each clip fills a reel format whose shape differs from the clip's.

For a format of the clip's own shape nothing changes (``fit``). Otherwise the crop is the largest window
of the format's shape inside the clip, and it follows the on-screen cast:

1. Faces are found with our face tools (:func:`ingredients_model.face_tools.detect_faces`, dlib HOG) in
   frames sampled :data:`SAMPLES_PER_SECOND` times a second; the shot's cast count keeps the largest
   faces (ignoring stray detections). Results are cached per clip key (:class:`FaceTrack`).
2. Per sample the window must hold every face (plus a margin); its desired position centres them
   (slightly below them when the crop trims top and bottom: heads need less room than bodies).
3. The positions are interpolated to every frame, smoothed over time (a Gaussian of
   :data:`SMOOTH_SECONDS`), kept so that every face stays inside, and written as a piecewise-linear ffmpeg
   expression in the frame number ``n`` for the ``crop`` filter (``crop``).
4. When the people do not fit side by side in the window, when not everyone is found, or when no face
   is found at all, the clip is shown whole over a blurred, enlarged copy of itself (``fill``), and the
   reason is given as the framing's ``note``. Shots without cast are cropped in the middle.

The same rules apply to preview and model clips: both are just videos of faces.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from storyreel.ffmpeg_tools import probe_video, read_frames
from storyreel.fsutil import atomic_write_json

__all__ = [
    "FRAMING_VERSION",
    "FaceTrack",
    "Framing",
    "detect_track",
    "face_track",
    "plan_framing",
]

FRAMING_VERSION = 1
"""Bump when the rules below change the framing of a clip: recorded with each reel, and in the cache."""
SAMPLES_PER_SECOND = 3.0
MIN_SAMPLES, MAX_SAMPLES = 3, 48
DETECT_LONG_SIDE = 640
"""Frames are scaled to this long side for face detection (boxes are scaled back): larger frames cost
time, and the HOG detector misses faces under about 80 pixels."""
SMOOTH_SECONDS = 0.4
"""Standard deviation of the Gaussian that smooths the crop's movement over time."""
FACE_MARGIN = 0.25
"""Room kept around the faces inside the crop, as a fraction of the face size (when there is room)."""
FIT_SHARE = 0.9
"""The crop keeps following the faces when they fit in at least this share of the sampled frames."""
SAME_SHAPE = 0.01
"""Aspect ratios closer than this (relative) count as the same shape: the clip is scaled only."""
BODY_BIAS = 0.15
"""When the crop trims top and bottom, its centre sits this fraction of its height below the faces."""
MAX_KEYS = 40


@dataclass(frozen=True)
class FaceTrack:
    """Faces found in sampled frames of one clip: ``samples`` is [(frame index, [(l, t, r, b, score)])]."""

    width: int
    height: int
    frames: int
    fps: float
    samples: list[tuple[int, list[tuple[float, float, float, float, float]]]]
    version: int = FRAMING_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> FaceTrack:
        return cls(
            int(data["width"]),
            int(data["height"]),
            int(data["frames"]),
            float(data["fps"]),
            [(int(i), [tuple(map(float, box)) for box in boxes]) for i, boxes in data["samples"]],
            int(data["version"]),
        )


@dataclass(frozen=True)
class Framing:
    """How one clip fills one format: ``fit`` (same shape, scaled), ``crop`` (a window of ``crop`` =
    (width, height) clip pixels at the ffmpeg expressions ``x``/``y`` in the frame number ``n``) or
    ``fill`` (the whole clip over a blurred copy). ``note`` says why when it is not what was wanted."""

    kind: Literal["fit", "crop", "fill"]
    crop: tuple[int, int] | None = None
    x: str = "0"
    y: str = "0"
    note: str | None = None
    path: list[tuple[int, float]] = field(default_factory=list)
    """The crop's keyframes (frame, offset along the cropped axis), for tests and the record."""


def _sample_indices(frames: int, fps: float) -> list[int]:
    count = int(min(MAX_SAMPLES, max(MIN_SAMPLES, math.ceil(frames / fps * SAMPLES_PER_SECOND))))
    count = min(count, frames)
    return sorted({round(k * (frames - 1) / max(1, count - 1)) for k in range(count)})


def detect_track(clip: Path, people: int = 1) -> FaceTrack:
    """Find the faces in sampled frames of ``clip`` (dlib HOG, see the module docstring); a frame with
    fewer than ``people`` faces is searched again at twice the size."""
    from ingredients_model.face_tools import detect_faces

    info = probe_video(clip)
    indices = _sample_indices(info.frames, info.fps)
    width = max(2, round(info.width * DETECT_LONG_SIDE / max(info.width, info.height) / 2) * 2)
    images = read_frames(clip, indices, width)
    back = info.width / width
    samples = []
    for index, image in zip(indices, images, strict=False):
        found = detect_faces(image, upsample=0)
        if len(found) < max(1, people):
            found = detect_faces(image, upsample=1)
        boxes = [(b.left * back, b.top * back, b.right * back, b.bottom * back, b.score) for b in found]
        samples.append((index, boxes))
    return FaceTrack(info.width, info.height, info.frames, info.fps, samples)


def face_track(clip: Path, cache_dir: Path | None, key: str | None, people: int = 1) -> FaceTrack:
    """:func:`detect_track`, cached as ``<cache_dir>/<key>.json`` (a clip's key fixes its frames and
    cast); an unreadable or outdated entry is detected again."""
    path = Path(cache_dir) / f"{key}.json" if cache_dir is not None and key else None
    if path is not None and path.is_file():
        try:
            track = FaceTrack.from_json(json.loads(path.read_text(encoding="utf-8")))
            if track.version == FRAMING_VERSION:
                return track
        except (OSError, ValueError, KeyError, TypeError):
            pass
    track = detect_track(clip, people)
    if path is not None:
        atomic_write_json(path, track.to_json())
    return track


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.5 or len(values) < 3:
        return values
    radius = math.ceil(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, radius, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _simplify(points: list[tuple[int, float]], tolerance: float) -> list[tuple[int, float]]:
    """Ramer–Douglas–Peucker on (frame, offset): the fewest keyframes within ``tolerance`` pixels."""
    if len(points) <= 2:
        return points
    (x0, y0), (x1, y1) = points[0], points[-1]
    worst, at = 0.0, 0
    for k in range(1, len(points) - 1):
        x, y = points[k]
        line = y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 != x0 else y0
        if abs(y - line) > worst:
            worst, at = abs(y - line), k
    if worst <= tolerance:
        return [points[0], points[-1]]
    return _simplify(points[: at + 1], tolerance)[:-1] + _simplify(points[at:], tolerance)


def _expression(keys: list[tuple[int, float]]) -> str:
    """A piecewise-linear function of ``n`` through ``keys`` as an ffmpeg expression."""
    if len(keys) == 1 or all(abs(v - keys[0][1]) < 0.5 for _, v in keys):
        return f"{keys[0][1]:.1f}"
    expr = f"{keys[-1][1]:.1f}"
    for (n0, v0), (n1, v1) in reversed(list(itertools.pairwise(keys))):
        slope = (v1 - v0) / (n1 - n0)
        expr = f"if(lt(n,{n1}),{v0:.1f}+{slope:.4f}*(n-{n0}),{expr})"
    return expr


def plan_framing(track: FaceTrack, width: int, height: int, people: int) -> Framing:
    """How a clip with faces ``track`` and ``people`` cast members fills a ``width`` x ``height`` format."""
    clip_w, clip_h = track.width, track.height
    target, source = width / height, clip_w / clip_h
    if abs(target / source - 1) < SAME_SHAPE:
        return Framing("fit")
    if target < source:  # narrower: the window slides left and right
        crop, axis, span = (_even(clip_h * target), clip_h), 0, clip_w
    else:  # wider: the window slides up and down
        crop, axis, span = (clip_w, _even(clip_w / target)), 1, clip_h
    length = crop[axis]
    if people == 0:
        offset = (span - length) / 2
        return Framing("crop", crop, *_xy(axis, f"{offset:.1f}"), path=[(0, offset)])
    lows, highs, wanted, frames = [], [], [], []
    with_faces = fitting = missing = 0
    for index, boxes in track.samples:
        faces = sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)[:people]
        if not faces:
            continue
        with_faces += 1
        missing += len(faces) < people
        lo = min(b[axis] for b in faces)
        hi = max(b[axis + 2] for b in faces)
        if hi - lo > length:
            continue
        fitting += 1
        size = float(np.median([min(b[2] - b[0], b[3] - b[1]) for b in faces]))
        margin = min(FACE_MARGIN * size, (length - (hi - lo)) / 2)
        lo, hi = lo - margin, hi + margin
        centre = (lo + hi) / 2 + (BODY_BIAS * length if axis == 1 else 0.0)
        low, high = max(hi - length, 0.0), min(lo, float(span - length))
        frames.append(index)
        lows.append(low)
        highs.append(max(low, high))
        wanted.append(min(max(centre - length / 2, low), max(low, high)))
    if with_faces == 0:
        return Framing("fill", note="no face found in the clip: blurred fill, so nobody is cut off")
    if fitting < FIT_SHARE * with_faces:
        return Framing(
            "fill",
            note=f"{people} people do not fit side by side in its {crop[0]}x{crop[1]} crop: blurred fill",
        )
    if missing * 2 > with_faces:
        return Framing("fill", note="not every person was found in the frames: blurred fill keeps them all")
    every = np.arange(track.frames)
    path = _smooth(np.interp(every, frames, wanted), SMOOTH_SECONDS * track.fps)
    path = np.clip(path, np.interp(every, frames, lows), np.interp(every, frames, highs))
    points = [(int(n), float(v)) for n, v in zip(every, path, strict=True)]
    tolerance = 1.0
    keys = _simplify(points, tolerance)
    while len(keys) > MAX_KEYS:
        tolerance *= 2
        keys = _simplify(points, tolerance)
    return Framing("crop", crop, *_xy(axis, _expression(keys)), path=keys)


def _xy(axis: int, expression: str) -> tuple[str, str]:
    return (expression, "0") if axis == 0 else ("0", expression)
