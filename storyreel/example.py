"""Cast photos of the example project, cut at init time from sample photos that installed packages ship.

No third-party photo lives in this repository: ``storyreel init DIR --example`` crops head-and-shoulders
portraits out of insightface's group photo ``insightface/data/images/t1.jpg`` (1280x886, six people) and
scikit-image's ``astronaut()`` (public-domain NASA portrait), around faces found by dlib's HOG detector.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from storyreel.errors import StoryreelError
from storyreel.fsutil import atomic_path

__all__ = ["EXAMPLE_CAST", "ExamplePhoto", "example_photo", "write_example_photos"]

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


@dataclass(frozen=True)
class ExamplePhoto:
    """One example cast photo: where it comes from and which face (0-based, left to right)."""

    name: str
    source: Callable[[], Image.Image]
    face: int
    faces_in_source: int


EXAMPLE_CAST = (
    ExamplePhoto("nora", _t1, face=0, faces_in_source=6),
    ExamplePhoto("sam", _t1, face=3, faces_in_source=6),
    ExamplePhoto("eileen", _astronaut, face=0, faces_in_source=1),
)
"""The example story's cast: file ``cast/<name>/1.jpg`` for each."""


Box = tuple[int, int, int, int]


def _detect(image: Image.Image) -> list[Box]:
    """Face boxes (left, top, right, bottom) found by dlib's HOG detector, left to right."""
    import numpy as np

    try:
        import dlib
    except ImportError:
        raise StoryreelError("dlib is not installed", "pip install dlib-bin") from None
    rects, scores, _ = dlib.get_frontal_face_detector().run(np.asarray(image), 0, 0.2)
    boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r, s in zip(rects, scores, strict=True) if s > 0]
    return sorted(boxes, key=lambda b: b[0] + b[2])


def example_photo(photo: ExamplePhoto, source: tuple[Image.Image, list[Box]] | None = None) -> Image.Image:
    """The head-and-shoulders portrait of ``photo``: a square around the face, CROP_SIZE pixels.

    ``source``: the source photo and its face boxes, when already at hand.
    """
    if source is None:
        image = photo.source()
        source = (image, _detect(image))
    image, boxes = source
    if len(boxes) != photo.faces_in_source:
        raise StoryreelError(
            f"expected {photo.faces_in_source} faces in the sample photo of {photo.name}; found {len(boxes)}",
            "the installed insightface/scikit-image sample photos or dlib differ from the tested ones",
        )
    left, top, right, bottom = boxes[photo.face]
    side = min(round((right - left) * CROP_SCALE), image.width, image.height)
    cx, cy = (left + right) / 2, (top + bottom) / 2 + 0.15 * (bottom - top)  # a little lower: shoulders
    x0 = int(min(max(cx - side / 2, 0), image.width - side))
    y0 = int(min(max(cy - side / 2, 0), image.height - side))
    crop = image.crop((x0, y0, x0 + side, y0 + side)).resize((CROP_SIZE, CROP_SIZE), Image.Resampling.LANCZOS)
    if len(_detect(crop)) != 1:
        raise StoryreelError(
            f"the example portrait of {photo.name} does not show exactly one face",
            "the installed sample photos differ from the tested ones",
        )
    return crop


def write_example_photos(cast_dir: Path) -> list[Path]:
    """Write ``cast/<name>/1.jpg`` for every example cast member; return the paths."""
    paths = []
    sources: dict[Callable[[], Image.Image], tuple[Image.Image, list[Box]]] = {}
    for photo in EXAMPLE_CAST:
        if photo.source not in sources:
            image = photo.source()
            sources[photo.source] = (image, _detect(image))
        path = Path(cast_dir) / photo.name / "1.jpg"
        image = example_photo(photo, sources[photo.source])
        with atomic_path(path) as tmp:
            image.save(tmp, format="JPEG", quality=92)
        paths.append(path)
    return paths
