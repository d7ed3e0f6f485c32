"""Frame sampling from video files (ffmpeg via imageio-ffmpeg, no ffprobe) and arrays.

:func:`sample_indices` is the strict protocol's rule (evenly spaced, rounded, no duplicates); the released
protocol's two index rules live in :mod:`ingredients_model.metrics.released`. Both decode with
:func:`read_video_frames`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ingredients_model.errors import IngredientsError

DEFAULT_NUM_FRAMES = (
    16  # the strict protocol's default; the public Ingredients scripts sample 24 (released.py)
)


def sample_indices(total: int, num: int) -> list[int]:
    """``num`` evenly spaced frame indices in ``[0, total)`` (first and last included, no duplicates)."""
    if total <= 0 or num <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, total - 1, min(num, total)).round()})


def count_frames(path: Path) -> int:
    """The number of decodable frames of a video file."""
    import imageio_ffmpeg

    try:
        frames, _seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (RuntimeError, OSError) as err:
        raise IngredientsError(
            f"cannot read video {path}: {err}", "Check the file plays; re-render it."
        ) from err
    return int(frames)


def read_video_frames(path: Path | str, indices: Sequence[int]) -> list[Image.Image]:
    """The RGB frames at ``indices`` of the video at ``path``, in the order given (repeats allowed).

    Indices past the last frame are skipped (as OpenCV's failed reads are in the public scripts).
    Raises :class:`IngredientsError` when the file is missing, unreadable, or yields no frame.
    """
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise IngredientsError(f"video not found: {path}", "Render it first, or check the path.")
    wanted = set(indices)
    decoded: dict[int, Image.Image] = {}
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration) as err:
        raise IngredientsError(
            f"cannot read video {path}: {err}", "Check the file plays; re-render it."
        ) from err
    try:
        width, height = meta["size"]
        for index, raw in enumerate(reader):
            if index in wanted:
                array = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
                decoded[index] = Image.fromarray(array.copy())
                if len(decoded) == len(wanted):
                    break
    except (RuntimeError, OSError) as err:
        raise IngredientsError(f"cannot decode video {path}: {err}", "Re-render the clip.") from err
    finally:
        reader.close()
    frames = [decoded[i] for i in indices if i in decoded]
    if not frames:
        raise IngredientsError(f"video has no frames: {path}", "Re-render the clip.")
    return frames


def sample_video_frames(path: Path | str, num: int = DEFAULT_NUM_FRAMES) -> list[Image.Image]:
    """Decode ``num`` evenly spaced RGB frames (:func:`sample_indices`) of the video at ``path``.

    Raises :class:`IngredientsError` when the file is missing, unreadable, or has no frames.
    """
    path = Path(path)
    if not path.is_file():
        raise IngredientsError(f"video not found: {path}", "Render it first, or check the path.")
    return read_video_frames(path, sample_indices(count_frames(path), num))


def sample_array_frames(
    frames: np.ndarray | Sequence[Image.Image], num: int = DEFAULT_NUM_FRAMES
) -> list[Image.Image]:
    """Evenly spaced frames of pipeline output: PIL images or an array [F, H, W, 3] (uint8, float 0..1)."""
    if isinstance(frames, np.ndarray):
        array = frames
        if array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(f"expected frames of shape [F, H, W, 3], got {array.shape}")
        if array.dtype != np.uint8:
            array = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        return [Image.fromarray(array[i]) for i in sample_indices(len(array), num)]
    return [frames[i].convert("RGB") for i in sample_indices(len(frames), num)]


def write_video(frames: np.ndarray | Sequence[Image.Image], path: Path, fps: int = 8) -> Path:
    """Write frames (as accepted by :func:`sample_array_frames`) to an H.264 MP4, atomically."""
    import imageio_ffmpeg

    images = sample_array_frames(frames, num=len(frames))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.mp4")
    width, height = images[0].size
    writer = imageio_ffmpeg.write_frames(
        str(tmp), (width, height), fps=fps, codec="libx264", macro_block_size=2, ffmpeg_log_level="error"
    )
    try:
        writer.send(None)
        for image in images:
            writer.send(np.ascontiguousarray(np.asarray(image, dtype=np.uint8)))
        writer.close()
        tmp.replace(path)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    return path
