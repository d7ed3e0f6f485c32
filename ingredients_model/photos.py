"""Loading user photos the way the released face pipeline expects them.

Any photo a phone or camera produces becomes an upright RGB image whose long side is at most
1024 pixels, exactly as the released inference prepares it (diffusers' ``load_image``: EXIF rotation,
RGB; then a 1024 px long side with OpenCV's ``INTER_LANCZOS4``). The one deliberate difference:
transparent pixels are composited on white, where the release keeps their hidden colour.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ingredients_model.errors import IngredientsError

MAX_LONG_SIDE = 1024
_CLEAR_PHOTO_HINT = "use a JPEG or PNG photo that opens in an image viewer"


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: transparency is composited on white, 16-bit greyscale is rescaled."""
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = float(array.max()) or 1.0
        return Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def resize_long_side(image: Image.Image, long_side: int = MAX_LONG_SIDE) -> Image.Image:
    """Downscale so the long side is at most ``long_side``, as released: ``k = long_side / max(w, h)``,
    size ``(int(w * k), int(h * k))``, OpenCV ``INTER_LANCZOS4``. Smaller images are returned as they are."""
    import cv2

    width, height = image.size
    if max(width, height) <= long_side:
        return image
    k = long_side / max(width, height)
    array = np.asarray(image)
    return Image.fromarray(
        cv2.resize(array, (int(width * k), int(height * k)), interpolation=cv2.INTER_LANCZOS4)
    )


def load_photo(path: Path, long_side: int = MAX_LONG_SIDE) -> Image.Image:
    """Open a photo as an upright RGB image with the long side at most ``long_side``.

    Applies the EXIF orientation, composites transparency on white, converts greyscale, CMYK and
    palette images. Raises :class:`IngredientsError` naming the photo when it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise IngredientsError(
            f"photo not found: {path}", "check the path (relative paths start at the project)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()  # fully decoded: the released code sees every pixel before downsizing
                image = ImageOps.exif_transpose(opened)
                image = to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise IngredientsError(
            f"photo {path} is too large to open safely ({err})", "downscale it below 50 megapixels"
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise IngredientsError(f"cannot read photo {path}: {err}", _CLEAR_PHOTO_HINT) from err
    if min(image.size) < 16:
        raise IngredientsError(f"photo {path} is only {image.width}x{image.height} pixels", _CLEAR_PHOTO_HINT)
    return resize_long_side(image, long_side)
