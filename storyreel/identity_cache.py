"""A verified, content-addressed cache of identity embeddings (``.storyreel/cache/identities/``).

One entry per (photo bytes, face choice, encoder fingerprint)::

    <key[:2]>/<key>.safetensors   id_cond + id_vit_hidden.<i> (float32, or bfloat16 when asked)
    <key[:2]>/<key>.png           the aligned face
    <key[:2]>/<key>.json          metadata, written last: versions, photo sha256, face choice and box,
                                  encoder fingerprint, tensor names/shapes/dtype, sha256 of both files
    <key[:2]>/<key>.lock          held (flock) while an entry is built, so concurrent renders build it once

Every hit is verified (metadata, both file hashes, tensor shapes and dtype); a damaged or stale entry
is rebuilt with an :class:`IdentityCacheWarning`, never trusted. Entries are never pickles.

A character with several photos gets one entry per photo; :func:`combine_photos` merges them as the
cast member's ``combine`` says (``mean``, ``best`` or ``first``; the maths is
:func:`ingredients_model.combine.combine_embeddings`), ranking photos by face size and sharpness.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import platform
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path

import torch
from PIL import Image

from ingredients_model.combine import COMBINE_MODES, Combine, combine_embeddings, photo_quality
from ingredients_model.errors import IngredientsError
from ingredients_model.face_tools import FaceBox, box_iou
from ingredients_model.faces import FaceEncoder, IdentityEmbedding
from storyreel.cast import (
    CHOOSE_FACE_HINT,
    FaceChoice,
    MemberLike,
    ResolvedFace,
    SeveralFacesWarning,
    choose_face,
    resolve_face,
)
from storyreel.errors import StoryreelError, StoryreelWarning
from storyreel.fsutil import (
    atomic_write_bytes,
    atomic_write_json,
    clear_folder_in_way,
    file_sha256,
    read_json_object,
)
from storyreel.locking import entry_lock

__all__ = ["CACHE_FORMAT", "CachedIdentity", "IdentityCache", "IdentityCacheWarning", "combine_photos"]

CACHE_FORMAT = 2
"""Bumped when the entry layout or the photo → encoder-input preparation changes (2: the whole photo, as
released, with the chosen face's box, instead of a crop around it)."""


class IdentityCacheWarning(StoryreelWarning):
    """A cache entry was damaged or stale and has been rebuilt."""


@dataclass
class CachedIdentity:
    """One photo's embedding plus what :func:`combine_photos` needs to rank photos."""

    embedding: IdentityEmbedding
    photo_sha256: str
    face_size: int
    sharpness: float
    arcface_dim: int
    hit: bool

    @property
    def quality(self) -> float:
        """:func:`~ingredients_model.combine.photo_quality`: larger and sharper faces rank higher."""
        return photo_quality(self.face_size, self.sharpness)


def combine_photos(items: Sequence[CachedIdentity], combine: Combine = "mean") -> IdentityEmbedding:
    """Merge several photos of one person into one embedding (``mean``, ``best`` or ``first``)."""
    if not items:
        raise ValueError("nothing to combine")
    return combine_embeddings(
        [item.embedding for item in items],
        combine,
        quality=[item.quality for item in items],
        arcface_dim=items[0].arcface_dim,
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_REBUILD_ON = ("storyreel", "torch", "safetensors")
"""Entries built with other versions of these are rebuilt (numerics or layout may differ)."""


@functools.cache
def _versions() -> dict[str, str]:
    import safetensors

    from storyreel import __version__

    return {
        "storyreel": __version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def _built_for(meta: dict) -> str | None:
    """The face choice token an entry was built for (entries written before it was recorded: their box)."""
    if isinstance(meta.get("choice"), str):
        return meta["choice"]
    try:
        return FaceChoice(box=FaceBox.from_dict(meta["box"])).token
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _encoded_face(resolved: ResolvedFace, encoded_box: tuple[float, ...] | None) -> int | None:
    """The 1-based face number (among ``resolved.boxes``) the encoder's own detector chose, by overlap."""
    if encoded_box is None or not resolved.boxes:
        return None
    overlaps = [box_iou(box.as_tuple(), encoded_box) for box in resolved.boxes]
    best = max(range(len(overlaps)), key=overlaps.__getitem__)
    return best + 1 if overlaps[best] > 0 else None


class IdentityCache:
    """Identity embeddings per photo, cached under ``directory`` (``project.identity_cache_dir``).

    ``dtype`` is the storage dtype (float32 keeps results exact; bfloat16 halves the size). Returned
    tensors are float32 and identical whether they come from the cache or were just built.
    """

    def __init__(self, directory: Path, *, combine: Combine = "mean", dtype: torch.dtype = torch.float32):
        if combine not in COMBINE_MODES:
            raise ValueError(f"combine must be 'mean', 'best' or 'first', not {combine!r}")
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"unsupported storage dtype {dtype}")
        self.directory = Path(directory)
        self.combine: Combine = combine
        self.dtype = dtype
        self.hits = 0
        self.misses = 0

    # -------------------------------------------------------------------------------------- public

    def get(self, member: MemberLike, encoder: FaceEncoder) -> IdentityEmbedding:
        """The member's identity: each photo from the cache (built on a miss), combined."""
        return self.get_person(member.photos, [member.face] * len(member.photos), encoder)

    def get_person(
        self, photos: Sequence[Path], faces: Sequence[int | FaceChoice | None], encoder: FaceEncoder
    ) -> IdentityEmbedding:
        """One person's identity from their ``photos`` and the face chosen in each, combined."""
        if not photos:
            raise StoryreelError(
                "a cast member without photos has no identity", "add photos with storyreel cast add"
            )
        items = [self.get_photo(photo, encoder, face) for photo, face in zip(photos, faces, strict=True)]
        return combine_photos(items, self.combine)

    def get_photo(
        self, photo: Path, encoder: FaceEncoder, face: int | FaceChoice | None = None
    ) -> CachedIdentity:
        """One photo's identity; ``face``: a :class:`~storyreel.cast.FaceChoice`, or ``face:`` from
        story.yaml (1-based, left to right; ``None``: the recorded, only or highest-scoring face)."""
        photo = Path(photo)
        if not photo.is_file():
            raise StoryreelError(f"photo not found: {photo}", "check the photos: list in story.yaml")
        photo_sha = file_sha256(photo)
        choice = face if isinstance(face, FaceChoice) else choose_face(photo, face)
        key = self.key(photo_sha, choice.token, encoder.fingerprint)
        existed = self._paths(key)[2].is_file()
        cached = self._load(key)
        if cached is None:
            with self._building(key):  # several render processes may want the same person at once
                if not existed:
                    cached = self._load(key)  # built by another process while we waited
                if cached is None:
                    self.misses += 1
                    return self._build(key, photo, photo_sha, choice, encoder)
        self.hits += 1
        return cached

    def has(
        self, photo_sha256: str, fingerprint: str | None = None, *, choice: FaceChoice | None = None
    ) -> bool:
        """Whether an entry exists for these photo bytes, built for this face ``choice`` and this encoder
        (each when given); not verified."""
        for meta_path in self.directory.glob("*/*.json"):
            meta = read_json_object(meta_path)
            if meta is None or meta.get("photo_sha256") != photo_sha256:
                continue
            if choice is not None and _built_for(meta) != choice.token:
                continue
            if fingerprint in (None, meta.get("encoder_fingerprint")):
                return True
        return False

    @staticmethod
    def key(photo_sha256: str, choice: str, fingerprint: str) -> str:
        """Content address of an entry."""
        return _sha256(f"{CACHE_FORMAT}\0{photo_sha256}\0{choice}\0{fingerprint}".encode())

    def entry_files(self, photo_sha256: str, choice: str, fingerprint: str) -> tuple[Path, ...]:
        """The files of one entry (tensors, aligned face, metadata), whether they exist yet or not."""
        return self._paths(self.key(photo_sha256, choice, fingerprint))

    # ------------------------------------------------------------------------------------ internals

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        base = self.directory / key[:2] / key
        return base.with_suffix(".safetensors"), base.with_suffix(".png"), base.with_suffix(".json")

    def _building(self, key: str) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on ``<key>.lock`` while one process builds the entry."""
        return entry_lock(self._paths(key)[0].with_suffix(".lock"))

    def _reject(self, key: str, reason: str) -> None:
        warnings.warn(
            f"identity cache entry {key[:12]}… is {reason}; rebuilding it", IdentityCacheWarning, stacklevel=4
        )

    def _load(self, key: str) -> CachedIdentity | None:
        from safetensors import SafetensorError
        from safetensors.torch import load as load_tensors

        paths = self._paths(key)
        tensor_path, face_path, meta_path = paths
        folders = [path.name for path in paths if path.is_dir()]
        if folders:
            self._reject(key, f"damaged ({', '.join(folders)} is a folder)")
            return None
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                self._reject(key, f"unreadable (its metadata is a JSON {type(meta).__name__}, not an object)")
                return None
            if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
                self._reject(key, "from another cache format (stale)")
                return None
            changed = {
                k: v for k, v in meta["versions"].items() if k in _REBUILD_ON and _versions().get(k) != v
            }
            if changed:
                self._reject(
                    key, f"stale (built with {', '.join(f'{k} {v}' for k, v in sorted(changed.items()))})"
                )
                return None
            data = tensor_path.read_bytes()
            if _sha256(data) != meta["tensor_sha256"]:
                self._reject(key, "corrupt (tensor file hash mismatch)")
                return None
            png = face_path.read_bytes()
            if _sha256(png) != meta["face_sha256"]:
                self._reject(key, "corrupt (aligned face hash mismatch)")
                return None
            tensors = load_tensors(data)
            expected = meta["tensors"]
            if sorted(tensors) != sorted(expected) or any(
                list(tensors[k].shape) != v["shape"] or str(tensors[k].dtype) != v["dtype"]
                for k, v in expected.items()
            ):
                self._reject(key, "inconsistent (tensor names, shapes or dtype differ from its metadata)")
                return None
            face = Image.open(BytesIO(png)).convert("RGB")
            hidden = [tensors[f"id_vit_hidden.{i}"].float() for i in range(meta["num_scales"])]
            box = FaceBox.from_dict(meta["box"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as err:
            self._reject(key, f"unreadable ({type(err).__name__}: {err})")
            return None
        return CachedIdentity(
            embedding=IdentityEmbedding(
                tensors["id_cond"].float(),
                hidden,
                face,
                tuple(meta["encoded_box"]) if meta["encoded_box"] else None,
            ),
            photo_sha256=meta["photo_sha256"],
            face_size=box.size,
            sharpness=meta["sharpness"],
            arcface_dim=meta["arcface_dim"],
            hit=True,
        )

    def _build(
        self, key: str, photo: Path, photo_sha: str, choice: FaceChoice, encoder: FaceEncoder
    ) -> CachedIdentity:
        from safetensors.torch import save as save_tensors

        resolved = resolve_face(photo, choice)
        # the whole photo, as released; in a group photo the chosen face's box says which face, and
        # with no choice the encoder's own detector takes its highest-scoring face, as released
        face_box = None if resolved.faces_found <= 1 or choice.is_auto else resolved.box.as_tuple()
        try:
            embedding = encoder.encode(resolved.image, face_box=face_box)
        except IngredientsError as err:
            raise StoryreelError.from_error(err, f"{photo}: ") from err
        if choice.is_auto and resolved.faces_found > 1:
            used = _encoded_face(resolved, embedding.face_box)
            if used is not None and used != resolved.face:
                warnings.warn(
                    f"{photo}: the model's face detector scores face {used} (from the left) highest and "
                    f"encodes it, while previews and the review page show face {resolved.face}; "
                    f"{CHOOSE_FACE_HINT} to use one face everywhere",
                    SeveralFacesWarning,
                    stacklevel=2,
                )
                resolved = replace(resolved, face=used, box=resolved.boxes[used - 1])
        tensors = {"id_cond": embedding.id_cond.detach().to("cpu", self.dtype).contiguous()}
        for i, hidden in enumerate(embedding.id_vit_hidden):
            tensors[f"id_vit_hidden.{i}"] = hidden.detach().to("cpu", self.dtype).contiguous()
        data = save_tensors(tensors)
        buffer = BytesIO()
        embedding.aligned_face.convert("RGB").save(buffer, format="PNG")
        png = buffer.getvalue()
        arcface_dim = int(getattr(encoder, "arcface_dim", 512))
        tensor_path, face_path, meta_path = self._paths(key)
        for path in (tensor_path, face_path, meta_path):
            clear_folder_in_way(path)
        atomic_write_bytes(tensor_path, data)
        atomic_write_bytes(face_path, png)
        atomic_write_json(
            meta_path,
            {
                "format": CACHE_FORMAT,
                "key": key,
                "versions": _versions(),
                "photo": str(photo),
                "photo_sha256": photo_sha,
                "face": resolved.face,
                "choice": choice.token,
                "faces_found": resolved.faces_found,
                "box": resolved.box.to_dict(),
                "encoded_box": list(embedding.face_box) if embedding.face_box else None,
                "sharpness": resolved.sharpness,
                "encoder_fingerprint": encoder.fingerprint,
                "arcface_dim": arcface_dim,
                "num_scales": len(embedding.id_vit_hidden),
                "dtype": str(self.dtype),
                "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tensors.items()},
                "tensor_sha256": _sha256(data),
                "face_sha256": _sha256(png),
            },
        )
        face_img = Image.open(BytesIO(png)).convert("RGB")
        hidden = [tensors[f"id_vit_hidden.{i}"].float() for i in range(len(embedding.id_vit_hidden))]
        return CachedIdentity(
            embedding=IdentityEmbedding(tensors["id_cond"].float(), hidden, face_img, embedding.face_box),
            photo_sha256=photo_sha,
            face_size=resolved.box.size,
            sharpness=resolved.sharpness,
            arcface_dim=arcface_dim,
            hit=False,
        )
