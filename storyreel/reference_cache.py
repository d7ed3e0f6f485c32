"""Reference images for reference-to-video engines (Wan VACE): a face crop per photo, cached and verified.

**Which image.** VACE conditions on reference *pixels*: each reference image is VAE-encoded into one extra
latent frame, and whatever it shows (face, clothes, background) is a concept the video may copy. For people,
VACE's own preprocessing for face references (``image_face``: ``FaceAnnotator`` on insightface's antelopev2,
one face) crops the detected face box and nothing else; its user guide asks for references whose background
is white ("Salient object segmentation can be performed to keep the background white"), and both VACE and
diffusers' ``WanVACEPipeline`` letterbox each reference, aspect kept and centred, on a white canvas of the
video's size. A whole photo would bring its room, its lighting and, in a group photo, other people into
every shot. So a person's reference is the **chosen face's box**, cropped from the photo (EXIF-upright, RGB,
not aligned, not segmented) and left to the pipeline to place on white. Our boxes come from dlib's HOG
detector, which is tighter than antelopev2's SCRFD (it cuts the forehead and chin); :data:`FACE_MARGIN` widens
it to the hairline and chin.

**Cache.** One entry per (photo bytes, face choice, margin), in ``.storyreel/cache/references/``::

    <key[:2]>/<key>.png    the crop
    <key[:2]>/<key>.json   written last: photo sha256, face, boxes, size, sharpness, sha256 of the PNG

Every hit is verified (metadata, PNG hash, decodes to the recorded size); a damaged or stale entry is rebuilt
with a :class:`ReferenceCacheWarning`. Concurrent builders of one entry write the same bytes atomically.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from PIL import Image

from ingredients_model.combine import COMBINE_MODES, Combine, photo_quality
from ingredients_model.face_tools import FaceBox
from storyreel.cast import FaceChoice, choose_face, resolve_face
from storyreel.errors import StoryreelError
from storyreel.fsutil import atomic_write_bytes, atomic_write_json, file_sha256

__all__ = [
    "FACE_MARGIN",
    "REFERENCE_FORMAT",
    "CachedReference",
    "ReferenceCache",
    "ReferenceCacheWarning",
    "widen",
]

REFERENCE_FORMAT = 1
"""Bumped when the entry layout or the photo → reference preparation changes."""

FACE_MARGIN = 0.2
"""Added on each side of the detected face box, as a fraction of its side (dlib's box → hairline and chin)."""


class ReferenceCacheWarning(UserWarning):
    """A reference cache entry was damaged or stale and has been rebuilt."""


@dataclass
class CachedReference:
    """One photo's reference crop and what choosing among a person's photos needs."""

    image: Image.Image
    photo_sha256: str
    face_size: int
    sharpness: float
    hit: bool

    @property
    def quality(self) -> float:
        """:func:`~ingredients_model.combine.photo_quality`: larger and sharper faces rank higher."""
        return photo_quality(self.face_size, self.sharpness)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def widen(box: FaceBox, size: tuple[int, int], margin: float = FACE_MARGIN) -> tuple[int, int, int, int]:
    """``box`` widened by ``margin`` times its side on each side, clipped to an image of ``size``."""
    pad = round(margin * max(box.width, box.height))
    width, height = size
    return (
        max(0, box.left - pad),
        max(0, box.top - pad),
        min(width, box.right + pad),
        min(height, box.bottom + pad),
    )


class ReferenceCache:
    """Reference crops per photo under ``directory`` (``.storyreel/cache/references``)."""

    def __init__(self, directory: Path, *, margin: float = FACE_MARGIN):
        self.directory = Path(directory)
        self.margin = margin
        self.hits = 0
        self.misses = 0

    def get_person(
        self, photos: Sequence[Path], faces: Sequence[FaceChoice | int | None], combine: Combine = "mean"
    ) -> Image.Image:
        """One person's reference from their ``photos`` and the face chosen in each: the first photo's
        crop for ``first``, else the crop of the photo with the largest, sharpest face (a reference is
        pixels, so ``mean`` cannot average them: it means ``best``)."""
        if combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {', '.join(COMBINE_MODES)}, not {combine!r}")
        if not photos:
            raise StoryreelError(
                "a cast member without photos has no reference image", "add photos with storyreel cast add"
            )
        pairs = list(zip(photos, faces, strict=True))
        if combine == "first":
            pairs = pairs[:1]
        items = [self.get_photo(Path(photo), face) for photo, face in pairs]
        return max(items, key=lambda item: item.quality).image

    def get_photo(self, photo: Path, face: FaceChoice | int | None = None) -> CachedReference:
        """One photo's reference crop; ``face``: a :class:`~storyreel.cast.FaceChoice`, or ``face:`` from
        story.yaml (1-based, left to right; ``None``: the recorded, only or highest-scoring face)."""
        photo = Path(photo)
        if not photo.is_file():
            raise StoryreelError(f"photo not found: {photo}", "check the photos: list in story.yaml")
        photo_sha = file_sha256(photo)
        choice = face if isinstance(face, FaceChoice) else choose_face(photo, face)
        key = self.key(photo_sha, choice.token, self.margin)
        cached = self._load(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        return self._build(key, photo, photo_sha, choice)

    @staticmethod
    def key(photo_sha256: str, choice: str, margin: float) -> str:
        """Content address of an entry (``choice``: a :attr:`~storyreel.cast.FaceChoice.token`)."""
        return _sha256(f"{REFERENCE_FORMAT}\0{photo_sha256}\0{choice}\0{margin!r}".encode())

    def entry_files(self, photo_sha256: str, choice: str) -> tuple[Path, Path]:
        """The files of one entry (crop, metadata), whether they exist yet or not."""
        return self._paths(self.key(photo_sha256, choice, self.margin))

    # ------------------------------------------------------------------------------------ internals

    def _paths(self, key: str) -> tuple[Path, Path]:
        base = self.directory / key[:2] / key
        return base.with_suffix(".png"), base.with_suffix(".json")

    def _reject(self, key: str, reason: str) -> None:
        warnings.warn(
            f"reference cache entry {key[:12]}… is {reason}; rebuilding it",
            ReferenceCacheWarning,
            stacklevel=4,
        )

    def _load(self, key: str) -> CachedReference | None:
        png_path, meta_path = self._paths(key)
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("format") != REFERENCE_FORMAT or meta.get("key") != key:
                self._reject(key, "from another cache format (stale)")
                return None
            png = png_path.read_bytes()
            if _sha256(png) != meta["png_sha256"]:
                self._reject(key, "corrupt (image hash mismatch)")
                return None
            image = Image.open(BytesIO(png))
            image.load()
            if list(image.size) != meta["size"] or image.mode != "RGB":
                self._reject(key, "inconsistent (image size or mode differs from its metadata)")
                return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            self._reject(key, f"unreadable ({type(err).__name__}: {err})")
            return None
        return CachedReference(image, meta["photo_sha256"], meta["face_size"], meta["sharpness"], hit=True)

    def _build(self, key: str, photo: Path, photo_sha: str, choice: FaceChoice) -> CachedReference:
        resolved = resolve_face(photo, choice)
        crop_box = widen(resolved.box, resolved.image.size, self.margin)
        image = resolved.image.convert("RGB").crop(crop_box)
        buffer = BytesIO()
        image.save(buffer, format="PNG")
        png = buffer.getvalue()
        png_path, meta_path = self._paths(key)
        atomic_write_bytes(png_path, png)
        atomic_write_json(
            meta_path,
            {
                "format": REFERENCE_FORMAT,
                "key": key,
                "photo": str(photo),
                "photo_sha256": photo_sha,
                "face": resolved.face,
                "faces_found": resolved.faces_found,
                "box": resolved.box.to_dict(),
                "crop_box": list(crop_box),
                "margin": self.margin,
                "face_size": resolved.box.size,
                "sharpness": resolved.sharpness,
                "size": list(image.size),
                "png_sha256": _sha256(png),
            },
        )
        return CachedReference(image, photo_sha, resolved.box.size, resolved.sharpness, hit=False)
