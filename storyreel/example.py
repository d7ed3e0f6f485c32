"""Cast photos of the example project, cut at init time from sample photos that installed packages ship.

No third-party photo lives in this repository: ``storyreel init DIR --example`` crops head-and-shoulders
portraits out of insightface's group photo ``insightface/data/images/t1.jpg`` (1280x886, six people) and
scikit-image's ``astronaut()`` (public-domain NASA portrait), around faces found by dlib's HOG detector
(the boxes are fixed here; each crop is verified with the detector again).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from storyreel.errors import StoryreelError
from storyreel.fsutil import atomic_path

__all__ = ["EXAMPLE_CAST", "Box", "ExamplePhoto", "example_photo", "write_example_photos"]

CROP_SCALE = 2.6
"""Side of the square crop, in face widths: head, hair and shoulders."""
CROP_SIZE = 512
"""Side of the saved portrait in pixels."""


def _t1() -> Image.Image:
    spec = importlib.util.find_spec("insightface")
    path = Path(spec.origin).parent / "data" / "images" / "t1.jpg" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise StoryreelError(
            "insightface's sample photo data/images/t1.jpg is not installed",
            "install insightface (`pip install --no-deps insightface`, as scripts/setup does)",
        )
    return Image.open(path).convert("RGB")


def _astronaut() -> Image.Image:
    try:
        from skimage import data
    except ImportError:
        raise StoryreelError("scikit-image is not installed", "pip install scikit-image") from None
    return Image.fromarray(data.astronaut()).convert("RGB")


Box = tuple[int, int, int, int]
"""left, top, right, bottom in pixels."""


@dataclass(frozen=True)
class ExamplePhoto:
    """One example cast photo: its source photo and the face box there (found with dlib's HOG detector)."""

    name: str
    source: Callable[[], Image.Image]
    face: Box


EXAMPLE_CAST = (
    ExamplePhoto("nora", _t1, face=(67, 283, 175, 390)),  # leftmost of the six faces in t1.jpg
    ExamplePhoto("sam", _t1, face=(724, 367, 832, 474)),  # fourth from the left
    ExamplePhoto("eileen", _astronaut, face=(175, 76, 265, 166)),
)
"""The example story's cast: file ``cast/<name>/1.jpg`` for each."""

VERIFY_SIZE = 256
"""The crop is checked at this size: dlib must find exactly one face, near the centre."""


def _detect(image: Image.Image) -> list[Box]:
    """Face boxes found by dlib's HOG detector (through :mod:`ingredients_model.face_tools`)."""
    from ingredients_model.face_tools import detect_faces

    return [(f.left, f.top, f.right, f.bottom) for f in detect_faces(image, upsample=0)]


def example_photo(photo: ExamplePhoto, source: Image.Image | None = None) -> Image.Image:
    """The head-and-shoulders portrait of ``photo``: a square around the face, CROP_SIZE pixels, verified.

    ``source``: the source photo, when already loaded.
    """
    image = source if source is not None else photo.source()
    left, top, right, bottom = photo.face
    side = min(round((right - left) * CROP_SCALE), image.width, image.height)
    cx, cy = (left + right) / 2, (top + bottom) / 2 + 0.15 * (bottom - top)  # a little lower: shoulders
    x0 = int(min(max(cx - side / 2, 0), image.width - side))
    y0 = int(min(max(cy - side / 2, 0), image.height - side))
    crop = image.crop((x0, y0, x0 + side, y0 + side)).resize((CROP_SIZE, CROP_SIZE), Image.Resampling.LANCZOS)
    faces = _detect(crop.resize((VERIFY_SIZE, VERIFY_SIZE), Image.Resampling.BILINEAR))
    expected = ((left + right) / 2 - x0) / side
    if len(faces) != 1 or abs((faces[0][0] + faces[0][2]) / 2 / VERIFY_SIZE - expected) > 0.1:
        raise StoryreelError(
            f"the example portrait of {photo.name} does not show the expected face "
            f"({len(faces)} found): the installed sample photo differs from the one this was made for",
            "report it; meanwhile add your own cast photos with `storyreel cast add`",
        )
    return crop


def write_example_photos(cast_dir: Path) -> list[Path]:
    """Write ``cast/<name>/1.jpg`` for every example cast member; return the paths."""
    paths = []
    sources: dict[Callable[[], Image.Image], Image.Image] = {}
    for photo in EXAMPLE_CAST:
        if photo.source not in sources:
            sources[photo.source] = photo.source()
        path = Path(cast_dir) / photo.name / "1.jpg"
        image = example_photo(photo, sources[photo.source])
        with atomic_path(path) as tmp:
            image.save(tmp, format="JPEG", quality=92)
        paths.append(path)
    return paths
