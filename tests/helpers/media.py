"""Small media files made with ffmpeg's test sources."""

from __future__ import annotations

import subprocess
from pathlib import Path

from storyreel.ffmpeg_tools import ffmpeg_exe


def make_clip(path: Path, frames: int, *, fps: int = 8, size: str = "72x48", source: str = "testsrc") -> Path:
    """A small H.264 clip from one of ffmpeg's test sources (``color=c=white`` works too)."""
    spec = f"{source}:size={size}:rate={fps}" if "=" in source else f"{source}=size={size}:rate={fps}"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", spec, "-frames:v", str(frames),
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


def make_tone(path: Path, seconds: float) -> Path:
    """A sine tone of ``seconds`` (440 Hz)."""
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         str(path)],
        check=True,
    )  # fmt: skip
    return path
