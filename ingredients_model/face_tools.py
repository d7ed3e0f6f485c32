"""Offline face tools on dlib's real weights (``dlib-bin`` + ``face-recognition-models``).

Everything that must work without the video model uses these: finding the faces in a photo, 5/68-point
landmarks, aligned square crops, and dlib's 128-d identity descriptor (same person below distance 0.6).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ingredients_model.errors import IngredientsError
from ingredients_model.photos import load_photo

__all__ = [
    "SAME_PERSON_THRESHOLD",
    "FaceBox",
    "align_face",
    "annotate_faces",
    "detect_faces",
    "detector_rows",
    "face_descriptor",
    "face_distance",
    "face_landmarks",
    "face_sharpness",
    "five_points",
    "load_photo",
]

SAME_PERSON_THRESHOLD = 0.6
"""dlib's recommended threshold: descriptors closer than this are the same person."""

DETECTION_THRESHOLD = 0.2
"""Minimum HOG detector score kept (dlib's default 0.0 lets patterned clothing through as faces)."""

ALIGN_PADDING = 0.4
"""Margin around the landmarks in aligned crops (dlib's unit: fraction of the face width)."""


@dataclass(frozen=True)
class FaceBox:
    """A detected face in image pixels (right/bottom exclusive) with the detector's confidence."""

    left: int
    top: int
    right: int
    bottom: int
    score: float = 0.0

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def size(self) -> int:
        """Side of the face box (the smaller of width and height)."""
        return min(self.width, self.height)

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return (self.left + self.right) / 2, (self.top + self.bottom) / 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaceBox:
        return cls(
            int(data["left"]), int(data["top"]), int(data["right"]), int(data["bottom"]), float(data["score"])
        )

    def to_dlib(self) -> Any:
        import dlib

        return dlib.rectangle(self.left, self.top, self.right - 1, self.bottom - 1)

    def iou(self, other: FaceBox) -> float:
        """Intersection over union with another box."""
        return box_iou(self.as_tuple(), other.as_tuple())

    def as_tuple(self) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)``."""
        return (self.left, self.top, self.right, self.bottom)


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when they do not overlap)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _model_file(name: str) -> str:
    # `import face_recognition_models` needs pkg_resources; locating the package avoids importing it
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise IngredientsError(
            "the offline face models are not installed (package face-recognition-models)",
            "pip install face-recognition-models dlib-bin",
        )
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise IngredientsError(
            f"dlib model file missing: {path}", "pip install --force-reinstall face-recognition-models"
        )
    return str(path)


@functools.cache
def _detector() -> Any:
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def _shape_predictor(points: int) -> Any:
    import dlib

    if points not in (5, 68):
        raise ValueError(f"landmark models exist for 5 or 68 points, not {points}")
    return dlib.shape_predictor(_model_file(f"shape_predictor_{points}_face_landmarks.dat"))


@functools.cache
def _recognizer() -> Any:
    import dlib

    return dlib.face_recognition_model_v1(_model_file("dlib_face_recognition_resnet_model_v1.dat"))


def _array(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def detect_faces(
    image: Image.Image, upsample: int | None = None, threshold: float = DETECTION_THRESHOLD
) -> list[FaceBox]:
    """Frontal faces (dlib HOG), ordered left to right by the box centre.

    ``upsample=None`` first searches at the photo's size, then once more at 2x (faces down to ~40 px)
    when nothing was found. Boxes are clipped to the image.
    """
    array = _array(image)
    height, width = array.shape[:2]
    levels = [upsample] if upsample is not None else [0, 1]
    rects, scores = [], []
    for level in levels:
        found = _detector().run(array, level, threshold)
        rects, scores = found[0], found[1]
        if len(rects):
            break
    boxes = [
        FaceBox(
            max(0, r.left()),
            max(0, r.top()),
            min(width, r.right() + 1),
            min(height, r.bottom() + 1),
            round(float(s), 4),
        )
        for r, s in zip(rects, scores, strict=True)
    ]
    boxes = [b for b in boxes if b.width > 0 and b.height > 0]
    return sorted(boxes, key=lambda b: (b.center[0], b.center[1]))


def _shape(array: np.ndarray, box: FaceBox, points: int = 5) -> Any:
    return _shape_predictor(points)(array, box.to_dlib())


def face_landmarks(image: Image.Image, box: FaceBox, points: int = 5) -> np.ndarray:
    """Landmarks of one face as an ``[points, 2]`` float array of (x, y) pixels; 5 or 68 points."""
    shape = _shape(_array(image), box, points)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def five_points(image: Image.Image, box: FaceBox) -> np.ndarray:
    """RetinaFace's five landmarks of one face from dlib's 68: eye centres, nose tip, mouth corners
    (image left first), ``[5, 2]`` float32."""
    p = face_landmarks(image, box, points=68)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]).astype(np.float32)


def detector_rows(photo_bgr: np.ndarray) -> np.ndarray:
    """dlib's faces in RetinaFace's row layout, ``[N, 15]`` float32: box, HOG score, :func:`five_points`;
    sorted by score, highest first, as RetinaFace returns them. A drop-in face detector for
    :mod:`ingredients_model.face_preprocessing` that needs no downloaded weights."""
    image = Image.fromarray(np.ascontiguousarray(np.asarray(photo_bgr)[:, :, ::-1]))
    rows = [
        [box.left, box.top, box.right, box.bottom, box.score, *five_points(image, box).reshape(-1)]
        for box in detect_faces(image)
    ]
    table = np.array(rows, dtype=np.float32).reshape(-1, 15)
    return table[np.argsort(-table[:, 4], kind="stable")]


def align_face(
    image: Image.Image, box: FaceBox, size: int = 512, padding: float = ALIGN_PADDING
) -> Image.Image:
    """A square, upright crop of one face aligned on its 5 landmarks (eyes level, face centred), in dlib's
    framing: for previews. The model's own crop is
    :func:`ingredients_model.face_preprocessing.align_to_template`."""
    import dlib

    array = _array(image)
    chip = dlib.get_face_chip(array, _shape(array, box), size=size, padding=padding)
    return Image.fromarray(np.asarray(chip, dtype=np.uint8)).convert("RGB")


def face_descriptor(image: Image.Image, box: FaceBox, jitters: int = 0) -> np.ndarray:
    """dlib's 128-d identity descriptor of one face (float64); compare with :func:`face_distance`."""
    array = _array(image)
    shape = _shape(array, box)
    return np.asarray(_recognizer().compute_face_descriptor(array, shape, jitters), dtype=np.float64)


def face_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors; below :data:`SAME_PERSON_THRESHOLD`: same person."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def face_sharpness(image: Image.Image, box: FaceBox) -> float:
    """Variance of the Laplacian inside the face box (higher is sharper), on a 128 px greyscale crop."""
    import cv2

    crop = image.crop((box.left, box.top, box.right, box.bottom)).convert("L").resize((128, 128))
    return float(cv2.Laplacian(np.asarray(crop, dtype=np.float32), cv2.CV_32F).var())


def annotate_faces(image: Image.Image, boxes: list[FaceBox]) -> Image.Image:
    """A copy of ``image`` with each box drawn and numbered 1.. (the numbering ``--face`` uses)."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    line = max(2, round(max(out.size) / 300))
    font_size = max(14, round(max(out.size) / 30))
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    for number, box in enumerate(boxes, start=1):
        draw.rectangle((box.left, box.top, box.right, box.bottom), outline=(255, 40, 40), width=line)
        label = str(number)
        x, y = box.left, max(0, box.top - font_size - 2 * line)
        left, top, right, bottom = draw.textbbox((x, y), label, font=font)
        draw.rectangle((left - line, top - line, right + line, bottom + line), fill=(255, 40, 40))
        draw.text((x, y), label, fill=(255, 255, 255), font=font)
    return out
