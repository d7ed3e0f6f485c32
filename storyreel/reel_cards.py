"""The drawn parts of a reel, as ffmpeg filter graphs: wrapped text (titles, captions, cards), the title,
credits and call-to-action cards, and the logo overlay. :mod:`storyreel.reel` places them in the reel."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import ffmpeg

from storyreel.colors import DEFAULT_COLORS, ffmpeg_color
from storyreel.ffmpeg_tools import wrap_text

CARD_FADE_SECONDS = 0.5
LOGO_MARGIN = 0.04
"""Distance of the logo from the reel's edges, as a fraction of the shorter side."""


class LogoSpec(Protocol):
    """A logo or watermark (``storyreel.story.Logo`` fits)."""

    file: Path
    position: str
    opacity: float
    size: float


class EndCardSpec(Protocol):
    """A call-to-action card (``storyreel.story.EndCard`` fits)."""

    text: str
    url: str | None
    seconds: float


class TextWriter:
    """Wrapped, centred text lines with drawtext (one filter per line; textfile avoids escaping)."""

    def __init__(self, font: Path, workdir: Path):
        self.font = font
        self.workdir = workdir
        self.count = 0

    def lines(self, text: str, size: int, width: int) -> list[str]:
        return wrap_text(text, self.font, size, int(width * 0.9))

    @staticmethod
    def step(size: int, box: bool) -> int:
        """Line spacing for text of ``size`` (more with a box behind each line)."""
        return round(size * (1.6 if box else 1.3))

    def draw(
        self,
        stream: Any,
        text: str,
        *,
        width: int,
        height: int,
        size: int,
        bottom: int | None = None,
        top: int | None = None,
        enable: str | None = None,
        color: str = DEFAULT_COLORS["text"],
        box: str | None = None,
    ) -> Any:
        """Draw ``text`` centred across: ``bottom`` pixels above the bottom edge, from ``top``, or centred
        (neither given); ``box`` is the colour of a box behind each line (none when None)."""
        lines = self.lines(text, size, width)
        step = self.step(size, box is not None)
        if top is None:
            top = (height - step * len(lines)) // 2 if bottom is None else height - bottom - step * len(lines)
        for k, line in enumerate(lines):
            self.count += 1
            textfile = self.workdir / f"text{self.count}.txt"
            textfile.write_text(line, encoding="utf-8")
            options: dict[str, Any] = dict(
                fontfile=str(self.font),
                textfile=str(textfile),
                expansion="none",
                fontsize=size,
                fontcolor=ffmpeg_color(color),
                x="(w-text_w)/2",
                y=top + k * step + (step - size) // 2,
                fix_bounds=1,
            )
            if box is not None:
                options.update(box=1, boxcolor=ffmpeg_color(box), boxborderw=max(2, size // 4))
            if enable:
                options["enable"] = enable
            stream = stream.filter("drawtext", **options)
        return stream


def blank(seconds: float, fps: int, width: int, height: int, color: str) -> tuple[Any, int]:
    """A card's background: ``seconds`` of ``color`` (``#rrggbbaa``; opacity ignored)."""
    frames = round(seconds * fps)
    source = f"color=c=0x{color[1:7].upper()}:s={width}x{height}:r={fps}"
    stream = ffmpeg.input(source, f="lavfi").video
    return stream.filter("trim", end_frame=frames).filter("format", "yuv420p").filter("setsar", 1), frames


def faded(stream: Any, frames: int, fps: int) -> Any:
    """A card of ``frames`` frames faded in and out over :data:`CARD_FADE_SECONDS`."""
    fade = round(CARD_FADE_SECONDS * fps)
    stream = stream.filter("fade", t="in", start_frame=0, nb_frames=fade)
    stream = stream.filter("fade", t="out", start_frame=frames - fade, nb_frames=fade)
    return stream.filter("settb", f"1/{fps}").filter("setpts", "N")


def title_card(
    text: str,
    seconds: float,
    fps: int,
    width: int,
    height: int,
    writer: TextWriter,
    size: int,
    colors: dict[str, str],
) -> Any:
    """A text card: ``text`` centred on the background colour, faded in and out."""
    stream, frames = blank(seconds, fps, width, height, colors["background"])
    stream = writer.draw(stream, text, width=width, height=height, size=size, color=colors["text"])
    return faded(stream, frames, fps)


def cta_card(
    card: EndCardSpec, fps: int, width: int, height: int, writer: TextWriter, colors: dict[str, str]
) -> Any:
    """The call-to-action card: its text, and the URL under it in the accent colour."""
    stream, frames = blank(card.seconds, fps, width, height, colors["background"])
    short = min(width, height)
    text_size, url_size = max(12, short // 9), max(10, short // 16)
    blocks = [(card.text, text_size, colors["text"])]
    if card.url:
        blocks.append((card.url, url_size, colors["accent"]))
    heights = [len(writer.lines(t, z, width)) * writer.step(z, False) for t, z, _ in blocks]
    gap = url_size
    top = (height - sum(heights) - gap * (len(blocks) - 1)) // 2
    for (text, size, color), block in zip(blocks, heights, strict=True):
        stream = writer.draw(stream, text, width=width, height=height, size=size, top=top, color=color)
        top += block + gap
    return faded(stream, frames, fps)


def overlay_logo(video: Any, logo: LogoSpec, width: int, height: int) -> Any:
    """``video`` with the logo over every frame, at its position, size and opacity."""
    short = min(width, height)
    logo_w = max(2, round(short * logo.size / 2) * 2)
    margin = round(short * LOGO_MARGIN)
    image = (
        ffmpeg.input(str(logo.file))
        .video.filter("scale", logo_w, -2, flags="lanczos")
        .filter("format", "rgba")
        .filter("colorchannelmixer", aa=f"{logo.opacity:.3f}")
    )
    x = {"left": str(margin), "right": f"W-w-{margin}", "center": "(W-w)/2"}
    y = {"top": str(margin), "bottom": f"H-h-{margin}", "center": "(H-h)/2"}
    vertical, _, horizontal = logo.position.partition("-")
    return ffmpeg.overlay(video, image, x=x[horizontal or "center"], y=y[vertical], eof_action="repeat")
