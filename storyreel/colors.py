"""Colours in story.yaml: ``#RGB``, ``#RRGGBB``, ``#RRGGBBAA`` or a CSS name (Pillow's ``ImageColor``)."""

from __future__ import annotations

from PIL import ImageColor

__all__ = ["DEFAULT_COLORS", "ffmpeg_color", "normalize_color", "rgba"]

DEFAULT_COLORS = {
    "text": "#ffffffff",
    "background": "#000000ff",
    "accent": "#ffcc4dff",
    "caption": "#ffffffff",
    "caption_box": "#0000008c",
}
"""Card and caption colours (``#rrggbbaa``) without a brand: the defaults of story.yaml's ``brand.colors``."""


def rgba(text: str) -> tuple[int, int, int, int]:
    """(r, g, b, a) of a colour; ValueError naming the accepted forms otherwise."""
    try:
        value = ImageColor.getrgb(str(text).strip())
    except ValueError:
        raise ValueError(
            f"bad colour {text!r}: use #RRGGBB, #RRGGBBAA (AA = opacity) or a CSS name such as white"
        ) from None
    if len(value) == 3:
        return (*value, 255)
    return value  # type: ignore[return-value]


def normalize_color(text: str) -> str:
    """A colour as ``#rrggbbaa``."""
    return "#" + "".join(f"{c:02x}" for c in rgba(text))


def ffmpeg_color(text: str) -> str:
    """A colour as ffmpeg writes it: ``0xRRGGBB@alpha``."""
    r, g, b, a = rgba(text)
    return f"0x{r:02X}{g:02X}{b:02X}@{a / 255:.3f}"
