"""The cast registry: photos under ``cast/<name>/``, the chosen face per photo, offline crops and checks.

Layout of one member (written only by ``storyreel cast add``; ``story.yaml`` is never edited)::

    cast/<name>/<photo>            the photos, copied byte for byte
    cast/<name>/faces.json         per photo: sha256, chosen face (1-based, from the left), box, descriptor
    cast/<name>/crops/<stem>.png   the aligned 512x512 face crop of each photo

Face boxes are in the coordinates of the loaded photo (EXIF-upright, long side at most 1024 px).
Which face of a photo is used is decided once, by :func:`choose_face` (a :class:`FaceChoice`): the box
recorded in ``faces.json`` for these exact bytes when ``face:`` in story.yaml is unset or names the same
face, else face ``K`` from story.yaml, else ``auto``: the only face, or in a group photo the face the
detector scores highest, as the released Ingredients code does (with a :class:`SeveralFacesWarning`
naming it and how to choose another). Jobs and the identity cache key on the choice's
:attr:`FaceChoice.token`; :func:`resolve_face` applies it to the photo.
"""

from __future__ import annotations

import itertools
import json
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ingredients_model.errors import IngredientsError
from ingredients_model.face_tools import (
    SAME_PERSON_THRESHOLD,
    FaceBox,
    align_face,
    annotate_faces,
    detect_faces,
    face_descriptor,
    face_distance,
    face_sharpness,
    load_photo,
)
from storyreel.errors import StoryreelError, StoryreelWarning
from storyreel.fsutil import atomic_path, atomic_write_bytes, atomic_write_json, file_sha256, special_kind
from storyreel.names import NAME_RULE, cast_name_problem, normalize_name

__all__ = [
    "CROP_SIZE",
    "FACES_FILE",
    "AddResult",
    "CastPhotos",
    "CastSummary",
    "FaceChoice",
    "PhotoFace",
    "ResolvedFace",
    "add_cast_member",
    "cast_photos",
    "choose_face",
    "face_crop",
    "list_cast",
    "photo_face_crop",
    "photo_files",
    "read_faces",
    "recorded_face",
    "remove_cast_member",
    "resolve_face",
    "validate_name",
    "write_cast_sheet",
]

FACES_FILE = "faces.json"
FACES_FORMAT = 1
CROP_SIZE = 512
CLEARER_PHOTO = "use a clearer, frontal photo where the face is well lit and at least ~80 px wide"


class ProjectPaths(Protocol):
    """What this module needs from :class:`storyreel.project.Project`."""

    root: Path
    cast_dir: Path
    state_dir: Path


class MemberLike(Protocol):
    """What this module needs from :class:`storyreel.story.CastMember`."""

    photos: list[Path]
    face: int | None


def validate_name(name: str) -> str:
    """A cast name in NFC, the form its folder is named in (the rule: :mod:`storyreel.names`)."""
    normal = normalize_name(name)
    problem = cast_name_problem(normal)
    if problem:
        raise StoryreelError(
            f"invalid cast name {name!r}: {problem}", f"use {NAME_RULE} (e.g. ana, old_tom, josé, 李)"
        )
    return normal


@dataclass
class PhotoFace:
    """The face chosen in one photo (one entry of ``faces.json``)."""

    photo: str
    sha256: str
    face: int
    faces_found: int
    box: FaceBox
    image_size: tuple[int, int]
    descriptor: list[float]
    sharpness: float
    crop: str
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = self.__dict__.copy()
        data["box"] = self.box.to_dict()
        data["image_size"] = list(self.image_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhotoFace:
        data = dict(data)
        data["box"] = FaceBox.from_dict(data["box"])
        data["image_size"] = tuple(data["image_size"])
        return cls(**data)


def _member_dir(project: ProjectPaths, name: str) -> Path:
    return Path(project.cast_dir) / validate_name(name)


def read_faces(directory: Path) -> dict[str, Any]:
    """``faces.json`` of a cast folder (``{"photos": []}`` when absent); unreadable → StoryreelError."""
    path = Path(directory) / FACES_FILE
    if not path.is_file():
        return {"format": FACES_FORMAT, "photos": []}
    try:
        data = json.loads(path.read_text())
        data["photos"] = [PhotoFace.from_dict(p) for p in data.get("photos", [])]
    except (ValueError, KeyError, TypeError) as err:
        raise StoryreelError(
            f"{path} is damaged ({err})",
            f"delete {path.parent} and add the photos again with storyreel cast add",
        ) from err
    return data


def recorded_face(photo: Path) -> PhotoFace | None:
    """The ``faces.json`` entry recorded next to ``photo`` for these exact bytes, if any."""
    photo = Path(photo)
    if not (photo.parent / FACES_FILE).is_file():
        return None
    entries = {e.photo: e for e in read_faces(photo.parent)["photos"]}
    entry = entries.get(photo.name)
    if entry is None or not photo.is_file() or entry.sha256 != file_sha256(photo):
        return None
    return entry


# ------------------------------------------------------------------------------------- choosing faces


@dataclass(frozen=True)
class FaceChoice:
    """Which face of one photo is used: the ``box`` ``cast add`` recorded, else face ``face`` (1-based, left
    to right), else (both None) ``auto``. :attr:`token` is its one spelling in job keys and cache keys."""

    face: int | None = None
    box: FaceBox | None = None

    @property
    def is_auto(self) -> bool:
        """Neither a recorded box nor a face number: the only face, or the highest-scoring one."""
        return self.box is None and self.face is None

    @property
    def token(self) -> str:
        """``box=LEFT,TOP,RIGHT,BOTTOM``, ``face=K`` or ``auto``."""
        if self.box is not None:
            box = self.box
            return f"box={box.left},{box.top},{box.right},{box.bottom}"
        return f"face={self.face}" if self.face is not None else "auto"

    @classmethod
    def parse(cls, token: str) -> FaceChoice:
        """The choice spelled ``token`` (see :attr:`token`)."""
        kind, _, value = token.partition("=")
        try:
            if kind == "box":
                left, top, right, bottom = (int(v) for v in value.split(","))
                return cls(box=FaceBox(left, top, right, bottom))
            if kind == "face":
                return cls(face=int(value))
        except ValueError:
            pass
        if token == "auto":
            return cls()
        raise ValueError(f"not a face choice: {token!r}")

    def same_box(self, box: FaceBox) -> bool:
        """Whether ``box`` is this choice's recorded box (the detector score aside)."""
        mine = self.box
        return mine is not None and (mine.left, mine.top, mine.right, mine.bottom) == (
            box.left,
            box.top,
            box.right,
            box.bottom,
        )


def choose_face(photo: Path, face: int | None = None) -> FaceChoice:
    """The face of ``photo`` to use, given ``face:`` from story.yaml (see the module docstring)."""
    entry = recorded_face(photo)
    if entry is not None and face in (None, entry.face):
        return FaceChoice(box=entry.box)
    return FaceChoice(face=face)


@dataclass(frozen=True)
class CastPhotos:
    """A cast member's photos as render jobs use them: paths, content hashes and the face chosen in each."""

    paths: tuple[Path, ...]
    hashes: tuple[str, ...]
    faces: tuple[FaceChoice, ...]


def cast_photos(member: MemberLike) -> CastPhotos:
    """Hash each photo of ``member`` and choose its face (reads ``faces.json`` next to the photos)."""
    paths = tuple(Path(photo) for photo in member.photos)
    return CastPhotos(
        paths=paths,
        hashes=tuple(file_sha256(path) for path in paths),
        faces=tuple(choose_face(path, member.face) for path in paths),
    )


def _faces_listing(boxes: list[FaceBox]) -> str:
    return "\n".join(
        f"  {i}: box left={b.left} top={b.top} right={b.right} bottom={b.bottom} ({b.size} px)"
        for i, b in enumerate(boxes, start=1)
    )


class SeveralFacesWarning(StoryreelWarning):
    """A group photo without a chosen face: the highest-scoring face is used."""


CHOOSE_FACE_HINT = "choose one with --face K (cast add) or `face: K` for this person in story.yaml"


def _numbered_preview(photo: Path, image: Image.Image, boxes: list[FaceBox], preview_dir: Path | None) -> str:
    """`` (numbered preview: PATH)`` after saving one under ``preview_dir``; empty without one."""
    if preview_dir is None:
        return ""
    preview = Path(preview_dir) / f"{photo.stem}-faces.png"
    with atomic_path(preview) as tmp:
        annotate_faces(image, boxes).save(tmp, format="PNG")
    return f" (numbered preview: {preview})"


def _choose(
    photo: Path, image: Image.Image, boxes: list[FaceBox], choice: FaceChoice, preview_dir: Path | None
) -> int:
    """0-based index of the face to use: the one overlapping ``choice.box`` most, face ``choice.face``
    (1-based), else the only face, else the one the detector scores highest, as released (with a
    :class:`SeveralFacesWarning`); a StoryreelError when there is no such face."""
    if not boxes:
        raise StoryreelError(f"no face found in {photo}", CLEARER_PHOTO)
    if choice.box is not None:  # a recorded face whose record does not fit this photo as loaded now
        overlaps = [choice.box.iou(box) for box in boxes]
        best = max(range(len(boxes)), key=overlaps.__getitem__)
        if overlaps[best] > 0:
            return best
        raise StoryreelError(
            f"the face recorded for {photo} ({choice.token}) is not among the faces found in it now",
            f"{CHOOSE_FACE_HINT}, or add the photo again with storyreel cast add",
        )
    face = choice.face
    if face is not None and 1 <= face <= len(boxes):
        return face - 1
    if face is None and len(boxes) == 1:
        return 0
    where = _numbered_preview(photo, image, boxes, preview_dir)
    if face is None:
        best = max(range(len(boxes)), key=lambda i: boxes[i].score)
        warnings.warn(
            f"{photo} shows {len(boxes)} faces and none is chosen: face {best + 1} (from the left), the one "
            f"the face detector scores highest, is used, as the released Ingredients code does{where}; "
            f"{CHOOSE_FACE_HINT}",
            SeveralFacesWarning,
            stacklevel=3,
        )
        return best
    hint = CHOOSE_FACE_HINT
    if preview_dir is None:
        hint += "; `storyreel cast add PHOTO --name NAME` saves a numbered preview"
    raise StoryreelError(
        f"face {face} was asked for but {photo} shows {len(boxes)} faces, numbered left to right:\n"
        f"{_faces_listing(boxes)}{where}",
        hint,
    )


@dataclass
class ResolvedFace:
    """A photo loaded and one of its faces chosen."""

    photo: Path
    sha256: str
    image: Image.Image
    box: FaceBox
    face: int
    faces_found: int
    sharpness: float = field(default=0.0)
    boxes: tuple[FaceBox, ...] = ()
    """Every face found, left to right (empty when the recorded box was used without detecting)."""


def resolve_face(
    photo: Path, face: int | FaceChoice | None = None, *, preview_dir: Path | None = None
) -> ResolvedFace:
    """Load ``photo`` and apply a face choice to it: ``face`` is a :class:`FaceChoice`, or ``face:`` from
    story.yaml (1-based, left to right; None: unset), which :func:`choose_face` turns into one.

    A recorded box needs no detection. ``FaceChoice(face=K)`` detects even when a record exists (``cast
    add`` uses that). Errors are :class:`StoryreelError` naming the photo; a ``preview_dir`` gets a
    numbered picture of the faces of a group photo.
    """
    photo = Path(photo)
    choice = face if isinstance(face, FaceChoice) else choose_face(photo, face)
    try:
        image = load_photo(photo)
    except IngredientsError as err:
        raise StoryreelError.from_error(err) from err
    entry = recorded_face(photo) if choice.box is not None else None
    if entry is not None and choice.same_box(entry.box) and entry.image_size == image.size:
        return ResolvedFace(
            photo, entry.sha256, image, entry.box, entry.face, entry.faces_found, entry.sharpness
        )
    boxes = detect_faces(image)
    index = _choose(photo, image, boxes, choice, preview_dir)
    box = boxes[index]
    return ResolvedFace(
        photo, file_sha256(photo), image, box, index + 1, len(boxes), face_sharpness(image, box), tuple(boxes)
    )


def face_crop(project: ProjectPaths, name: str, member: MemberLike) -> Image.Image:
    """The aligned 512x512 face crop of a member's first photo (offline, dlib): reviews."""
    if not member.photos:
        raise StoryreelError(f"cast member {name} has no photos", f"storyreel cast add PHOTO --name {name}")
    photo = Path(member.photos[0])
    if not photo.is_absolute():
        photo = Path(project.root) / photo
    return photo_face_crop(photo, choose_face(photo, member.face))


def photo_face_crop(photo: Path, choice: FaceChoice) -> Image.Image:
    """The aligned 512x512 crop of the chosen face of ``photo``: the one ``cast add`` saved for a
    recorded box, else computed (offline, dlib)."""
    entry = recorded_face(photo) if choice.box is not None else None
    if entry is not None and choice.same_box(entry.box):
        try:
            with Image.open(Path(photo).parent / entry.crop) as crop:
                return crop.convert("RGB")
        except OSError:
            pass  # missing or damaged crop: compute it
    resolved = resolve_face(photo, choice)
    return align_face(resolved.image, resolved.box, size=CROP_SIZE)


def photo_files(photo: Path) -> list[Path]:
    """The files that rendering with ``photo`` reads: the photo, and its folder's ``faces.json`` and its
    crop when ``cast add`` recorded them (all under the photo's folder, so they can travel together)."""
    photo = Path(photo)
    files = [photo]
    faces = photo.parent / FACES_FILE
    if faces.is_file():
        files.append(faces)
        entry = recorded_face(photo)
        crop = photo.parent / entry.crop if entry is not None else None
        if crop is not None and crop.is_file() and crop.resolve().is_relative_to(photo.parent.resolve()):
            files.append(crop)
    return files


# ------------------------------------------------------------------------------------------- cast add


@dataclass
class AddResult:
    """What ``cast add`` did."""

    name: str
    directory: Path
    added: list[PhotoFace]
    unchanged: list[PhotoFace]
    photos: list[PhotoFace]
    warnings: list[str]
    snippet: str
    entry: dict[str, Any]  # the snippet as data: the member's story.yaml ``cast:`` entry


def _destination(directory: Path, source: Path, sha: str, taken: dict[str, str]) -> str:
    """File name for ``source`` inside the member folder (suffix -2, -3 … on clashes; its own name when
    it is already there)."""
    stem, suffix = source.stem, source.suffix.lower() or ".jpg"
    for n in itertools.count(1):
        name = f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}"
        if taken.get(name) == sha or (name not in taken and not (directory / name).exists()):
            return name
        if (directory / name).exists() and (directory / name).samefile(source):  # already in its folder
            return name
    raise AssertionError("unreachable")


def cast_entry(
    project: ProjectPaths, directory: Path, photos: list[PhotoFace], description: str
) -> dict[str, Any]:
    """A member's story.yaml ``cast:`` entry: photos (project-relative), description, face if needed."""
    rel = directory.relative_to(Path(project.root)) if directory.is_relative_to(project.root) else directory
    entry: dict[str, Any] = {
        "photos": [f"{rel.as_posix()}/{p.photo}" for p in photos],
        "description": description,
    }
    faces = {p.face for p in photos}
    if len(faces) == 1 and any(p.faces_found > 1 for p in photos):
        entry["face"] = faces.pop()
    return entry


def _snippet(name: str, entry: dict[str, Any]) -> str:
    lines = ["cast:", f"  {name}:", f"    photos: [{', '.join(entry['photos'])}]"]
    lines.append(f"    description: {json.dumps(entry['description'])}")
    if "face" in entry:
        lines.append(f"    face: {entry['face']}")
    return "\n".join(lines)


def _similarity_warnings(project: ProjectPaths, name: str, photos: list[PhotoFace]) -> list[str]:
    warnings = []
    for a, b in itertools.combinations(photos, 2):
        distance = face_distance(np.array(a.descriptor), np.array(b.descriptor))
        if distance >= SAME_PERSON_THRESHOLD:
            warnings.append(
                f"{a.photo} and {b.photo} of {name} look like different people (distance {distance:.2f} ≥ "
                f"{SAME_PERSON_THRESHOLD}); check the photos and the chosen faces"
            )
    cast_dir = Path(project.cast_dir)
    others = (
        sorted(p for p in cast_dir.iterdir() if p.is_dir() and p.name != name) if cast_dir.is_dir() else []
    )
    for other in others:
        try:
            their = read_faces(other)["photos"]
        except StoryreelError:
            continue
        pairs = [
            (face_distance(np.array(a.descriptor), np.array(b.descriptor)), b) for a in photos for b in their
        ]
        if pairs:
            distance, _ = min(pairs, key=lambda pair: pair[0])
            if distance < SAME_PERSON_THRESHOLD:
                warnings.append(
                    f"{name} looks like existing cast member {other.name} (distance {distance:.2f} < "
                    f"{SAME_PERSON_THRESHOLD}); the model may mix them up"
                )
    return warnings


def add_cast_member(
    project: ProjectPaths,
    name: str,
    photos: list[Path],
    *,
    description: str | None = None,
    face: int | None = None,
) -> AddResult:
    """Copy ``photos`` into ``cast/<name>/``, record the chosen face of each, write crops, check identities.

    Adding a photo that is already there (same bytes, same face) changes nothing. ``face`` (1-based,
    left to right) chooses the face in photos showing several; without it the highest-scoring face is
    used and recorded, with a warning naming it and a numbered preview under ``.storyreel/faces/``.
    Never edits ``story.yaml``.
    """
    name = validate_name(name)
    if not photos:
        raise StoryreelError("no photo given", f"storyreel cast add PHOTO... --name {name}")
    if face is not None and face < 1:
        raise StoryreelError(f"--face must be 1 or more, not {face}", "faces are numbered 1.. from the left")
    directory = _member_dir(project, name)
    existing = read_faces(directory)
    entries: dict[str, PhotoFace] = {e.photo: e for e in existing["photos"]}
    taken = {e.photo: e.sha256 for e in entries.values()}
    preview_dir = Path(project.state_dir) / "faces"
    added, unchanged, resolved = [], [], []
    for photo in map(Path, photos):
        if kind := special_kind(photo):
            raise StoryreelError(
                f"{photo} is {kind}, not a photo file", "give the path of a JPEG or PNG photo"
            )
        if not photo.is_file():
            raise StoryreelError(f"photo not found: {photo}", "check the path")
        sha = file_sha256(photo)
        # the same bytes with the same (or no new) face choice: recorded already, no detection needed
        known = [e for e in entries.values() if e.sha256 == sha and face in (None, e.face)]
        if known:
            unchanged.append(known[0])
        else:
            resolved.append(resolve_face(photo, FaceChoice(face=face), preview_dir=preview_dir))

    for item in resolved:
        same = [e for e in entries.values() if e.sha256 == item.sha256 and e.face == item.face]
        if same:  # the same photo given twice
            unchanged.append(same[0])
            continue
        stale = [e for e in entries.values() if e.sha256 == item.sha256]
        target = stale[0].photo if stale else _destination(directory, item.photo, item.sha256, taken)
        taken[target] = item.sha256
        crop_rel = f"crops/{Path(target).stem}.png"
        entry = PhotoFace(
            photo=target,
            sha256=item.sha256,
            face=item.face,
            faces_found=item.faces_found,
            box=item.box,
            image_size=item.image.size,
            descriptor=[round(float(v), 6) for v in face_descriptor(item.image, item.box)],
            sharpness=round(item.sharpness, 3),
            crop=crop_rel,
            source=str(item.photo.resolve()),
        )
        if not (directory / target).is_file():
            atomic_write_bytes(directory / target, item.photo.read_bytes())
        with atomic_path(directory / crop_rel) as tmp:
            align_face(item.image, item.box, size=CROP_SIZE).save(tmp, format="PNG")
        entries[target] = entry
        added.append(entry)

    all_photos = list(entries.values())
    description = description or existing.get("description") or f"a person (describe {name} here)"
    atomic_write_json(
        directory / FACES_FILE,
        {
            "format": FACES_FORMAT,
            "name": name,
            "description": description,
            "photos": [e.to_dict() for e in all_photos],
        },
    )
    warnings = _similarity_warnings(project, name, all_photos) if added else []
    member = cast_entry(project, directory, all_photos, description)
    return AddResult(name, directory, added, unchanged, all_photos, warnings, _snippet(name, member), member)


# ------------------------------------------------------------------------------- list / show / remove


@dataclass
class CastSummary:
    """One row of ``cast list``: a person, their photos and the face chosen in each."""

    name: str
    photos: int
    face_size: int | None
    photo_hashes: list[str]
    description: str
    faces: list[FaceChoice] = field(default_factory=list)
    """The face used in each photo (parallel to ``photo_hashes``)."""
    in_story: bool | None = None
    """Whether story.yaml lists this person (None: no story given)."""
    cache_dir: Path | None = None
    """Where this person's identities are cached when not in the project's cache (a library member's)."""


class StoryMember(MemberLike, Protocol):
    """What :func:`list_cast` needs from a story's cast member."""

    description: str


def list_cast(
    project: ProjectPaths, story_cast: Mapping[str, StoryMember] | None = None
) -> list[CastSummary]:
    """The project's people by name: the members registered under ``cast/`` (folders with a
    ``faces.json``) and, when ``story_cast`` is given, the story's cast, whose photos may be anywhere.
    For someone in both, the story's photos and ``face:`` count, as they do when rendering."""
    cast_dir = Path(project.cast_dir)
    rows: dict[str, CastSummary] = {}
    for directory in sorted(cast_dir.iterdir()) if cast_dir.is_dir() else []:
        if not (directory / FACES_FILE).is_file():
            continue
        data = read_faces(directory)
        photos = data["photos"]
        rows[directory.name] = CastSummary(
            name=directory.name,
            photos=len(photos),
            face_size=min((p.box.size for p in photos), default=None),
            photo_hashes=[p.sha256 for p in photos],
            description=data.get("description", ""),
            faces=[FaceChoice(box=p.box) for p in photos],
        )
    from storyreel.cast_library import member_cache_dir

    for name, member in (story_cast or {}).items():
        paths = [Path(photo) for photo in member.photos if Path(photo).is_file()]
        faces = [choose_face(path, member.face) for path in paths]
        recorded = [recorded_face(path) for path in paths]  # sizes known for recorded faces only
        sizes = [e.box.size for e, face in zip(recorded, faces, strict=True) if e and face.same_box(e.box)]
        rows[name] = CastSummary(
            name=name,
            photos=len(member.photos),
            face_size=min(sizes) if len(sizes) == len(paths) and sizes else None,
            photo_hashes=[file_sha256(path) for path in paths],
            description=member.description or "",
            faces=faces,
            cache_dir=member_cache_dir(member),
        )
    for row in rows.values():
        row.in_story = None if story_cast is None else row.name in story_cast
    return [rows[name] for name in sorted(rows)]


def write_cast_sheet(project: ProjectPaths, name: str) -> Path:
    """A contact sheet of a member's face crops (``.storyreel/sheets/<name>.png``); returns its path."""
    name = validate_name(name)
    directory = _member_dir(project, name)
    if not (directory / FACES_FILE).is_file():
        raise StoryreelError(f"no cast member {name} under {project.cast_dir}", _known_names_hint(project))
    photos = read_faces(directory)["photos"]
    tile, label = 256, 28
    sheet = Image.new("RGB", (max(1, len(photos)) * tile, tile + label), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    for i, entry in enumerate(photos):
        crop_path = directory / entry.crop
        try:
            with Image.open(crop_path) as crop:
                sheet.paste(crop.convert("RGB").resize((tile, tile)), (i * tile, 0))
        except OSError:
            image = load_photo(directory / entry.photo)
            sheet.paste(align_face(image, entry.box, size=tile), (i * tile, 0))
        draw.text((i * tile + 6, tile + 6), f"{entry.photo} (face {entry.face})", fill=(0, 0, 0), font=font)
    path = Path(project.state_dir) / "sheets" / f"{name}.png"
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def _known_names_hint(project: ProjectPaths) -> str:
    names = [row.name for row in list_cast(project)]
    return (
        f"known cast: {', '.join(names)}"
        if names
        else "add someone with storyreel cast add PHOTO --name NAME"
    )


def remove_cast_member(project: ProjectPaths, name: str) -> Path:
    """Delete ``cast/<name>/`` (photos, faces.json, crops). Returns the removed folder."""
    directory = _member_dir(project, name)
    if not directory.is_dir():
        raise StoryreelError(f"no cast member {name} under {project.cast_dir}", _known_names_hint(project))
    shutil.rmtree(directory)
    return directory
