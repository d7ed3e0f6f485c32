"""A reel's poster frame: the sharpest of a few frames sampled inside its shots (variance of the
Laplacian, the usual focus measure), not the first frame, which is often a title card or a fade."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from storyreel.ffmpeg_tools import probe_video, read_frames
from storyreel.fsutil import atomic_path

__all__ = ["CANDIDATES", "laplacian_variance", "sharpest_frame", "write_poster"]

CANDIDATES = 12
"""Frames compared per reel."""
CAPTION_BAND = 0.25
"""The bottom share of the frame left out of the measure: burned captions are sharp but not the picture."""


def laplacian_variance(image: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian of the image's luminance (higher: sharper)."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return 0.0
    lap = 4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:]
    return float(lap.var())


def _candidates(total: int, spans: Sequence[tuple[int, int]], count: int) -> list[int]:
    """``count`` frame indices spread over ``spans`` ([start, end) frame ranges), else over the video."""
    frames = [n for start, end in spans for n in range(max(0, start), min(total, end))]
    if not frames:
        frames = list(range(total))
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return sorted({frames[i] for i in picks})


def sharpest_frame(
    video: Path, spans: Sequence[tuple[int, int]] = (), count: int = CANDIDATES
) -> tuple[int, Image.Image]:
    """(frame index, image) of the sharpest of ``count`` frames sampled inside ``spans`` (the shots'
    frame ranges in the reel; the whole video when empty)."""
    total = probe_video(video).frames
    indices = _candidates(total, spans, count)
    images = read_frames(video, indices)

    def score(image: Image.Image) -> float:
        keep = image.crop((0, 0, image.width, max(3, round(image.height * (1 - CAPTION_BAND)))))
        return laplacian_variance(keep)

    best = max(range(len(images)), key=lambda k: score(images[k]))
    return indices[best], images[best]


def write_poster(video: Path, path: Path, spans: Sequence[tuple[int, int]] = ()) -> Path:
    """Save the sharpest frame of ``video`` as a JPEG at ``path`` (atomically)."""
    _, image = sharpest_frame(video, spans)
    with atomic_path(path) as tmp:
        image.save(tmp, format="JPEG", quality=88)
    return path
