"""Reel formats: aspect ratios, sizes and named platform presets, one reel each from the same clips.

``output.formats`` lists them; each entry is

* a ratio ``W:H`` (``16:9``, ``9:16``, ``1:1``, ``4:5``): the reel's shorter side is the shorter side of
  ``output.size`` (720x480 → 16:9 is 854x480, 9:16 is 480x854), at ``output.fps``;
* a size ``WIDTHxHEIGHT`` (``1080x1920``), at ``output.fps``;
* a preset name from :data:`PRESETS`, with the platform's size and frame rate.

Each format's reel is ``output.file`` with the format's label before the suffix (``reel-9x16.mp4``,
``reel-tiktok.mp4``) unless the entry names its own ``file``. Without ``output.formats`` the story has
one format: ``output.size`` at ``output.fps`` into ``output.file``.

Clips are rendered once, at the engine's size (the preview: ``output.size``), and reframed per format
(:mod:`storyreel.reframe`). A format's :attr:`ReelFormat.orientation` is what an engine that renders
both orientations natively would use to render that format's clips itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

__all__ = [
    "PRESETS",
    "Preset",
    "ReelFormat",
    "format_label",
    "parse_format",
    "presets_table",
    "resolve_format",
]


@dataclass(frozen=True)
class Preset:
    """A platform's recommended upload size and frame rate."""

    width: int
    height: int
    fps: int
    platform: str


PRESETS: dict[str, Preset] = {
    "instagram-reel": Preset(1080, 1920, 30, "Instagram Reels and Stories (9:16)"),
    "instagram-feed": Preset(1080, 1350, 30, "Instagram feed, portrait (4:5)"),
    "tiktok": Preset(1080, 1920, 30, "TikTok (9:16)"),
    "youtube": Preset(1920, 1080, 30, "YouTube, 1080p (16:9)"),
    "youtube-shorts": Preset(1080, 1920, 30, "YouTube Shorts (9:16)"),
}
"""Named formats: the one table of platform sizes and frame rates (the README shows it)."""

_RATIO_RE = re.compile(r"^\s*(\d{1,3})\s*:\s*(\d{1,3})\s*$")
_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
MAX_RATIO = 4.0  # wider than 4:1 or taller than 1:4 is not a reel


@dataclass(frozen=True)
class ReelFormat:
    """One reel of a story: its label (``16x9``, ``tiktok``; empty for the story's only format), size,
    frame rate and file (relative to the project folder)."""

    label: str
    width: int
    height: int
    fps: int
    file: str

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @property
    def orientation(self) -> Literal["landscape", "portrait", "square"]:
        if self.width == self.height:
            return "square"
        return "landscape" if self.width > self.height else "portrait"

    @property
    def name(self) -> str:
        """How the user names it: the label, or the size for a story's only format."""
        return self.label or self.size


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def parse_format(text: str, base_width: int, base_height: int, base_fps: int) -> tuple[int, int, int]:
    """(width, height, fps) of a format entry; ValueError with a message for the user otherwise."""
    text = str(text).strip()
    if text.lower() in PRESETS:
        preset = PRESETS[text.lower()]
        return preset.width, preset.height, preset.fps
    ratio = _RATIO_RE.match(text)
    if ratio:
        a, b = int(ratio.group(1)), int(ratio.group(2))
        if not a or not b or max(a / b, b / a) > MAX_RATIO:
            raise ValueError(f"bad ratio {text!r}: use ratios from 1:{MAX_RATIO:g} to {MAX_RATIO:g}:1")
        short = min(base_width, base_height)
        if a >= b:
            return _even(short * a / b), _even(short), base_fps
        return _even(short), _even(short * b / a), base_fps
    size = _SIZE_RE.match(text)
    if size:
        width, height = int(size.group(1)), int(size.group(2))
        if not (16 <= width <= 7680 and 16 <= height <= 4320) or width % 2 or height % 2:
            raise ValueError(f"bad size {text!r}: width and height must be even numbers from 16 to 7680x4320")
        return width, height, base_fps
    raise ValueError(f"unknown format {text!r}")


def format_label(text: str) -> str:
    """The label a format entry gives its reel's file name: ``9:16`` → ``9x16``, presets by name."""
    text = str(text).strip()
    if text.lower() in PRESETS:
        return text.lower()
    ratio = _RATIO_RE.match(text)
    if ratio:
        return f"{int(ratio.group(1))}x{int(ratio.group(2))}"
    size = _SIZE_RE.match(text)
    if size:
        return f"{int(size.group(1))}x{int(size.group(2))}"
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "format"


def resolve_format(text: str, file: str | None, reel_file: str, base: tuple[int, int, int]) -> ReelFormat:
    """The :class:`ReelFormat` of one ``output.formats`` entry (``base``: output size and fps)."""
    width, height, fps = parse_format(text, *base)
    label = format_label(text)
    if file is None:
        path = PurePosixPath(reel_file)
        file = str(path.with_name(f"{path.stem}-{label}{path.suffix}"))
    return ReelFormat(label, width, height, fps, file)


def presets_table() -> str:
    """The presets as a Markdown table (the README's copy is checked against it)."""
    rows = ["| preset | size | fps | for |", "|---|---|---|---|"]
    rows += [f"| `{name}` | {p.width}x{p.height} | {p.fps} | {p.platform} |" for name, p in PRESETS.items()]
    return "\n".join(rows)
