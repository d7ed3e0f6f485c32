"""storyreel.reference_cache: face crops, content addressing, verified hits, rebuilding, choosing."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from ingredients_model.face_tools import FaceBox, detect_faces, load_photo
from storyreel.cast import SeveralFacesWarning
from storyreel.errors import StoryreelError
from storyreel.reference_cache import FACE_MARGIN, ReferenceCache, ReferenceCacheWarning, widen


@pytest.fixture
def photo(astronaut_png: Path, tmp_path: Path) -> Path:
    path = tmp_path / "astronaut.png"
    path.write_bytes(astronaut_png.read_bytes())
    return path


def _entry_files(cache: ReferenceCache) -> dict[str, Path]:
    return {p.suffix: p for p in cache.directory.glob("*/*") if p.is_file()}


def test_widen_adds_the_margin_and_stays_inside_the_image() -> None:
    box = FaceBox(100, 50, 200, 150)
    assert widen(box, (1000, 1000)) == (80, 30, 220, 170)  # 20 % of the 100 px side on each side
    assert widen(box, (210, 160), margin=0.5) == (50, 0, 210, 160)


def test_miss_then_verified_hit_is_the_widened_face_box(photo: Path, tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path / "refs")
    built = cache.get_photo(photo)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = cache.get_photo(photo)
    assert (built.hit, loaded.hit, cache.misses, cache.hits) == (False, True, 1, 1)
    assert list(built.image.getdata()) == list(loaded.image.getdata())
    image = load_photo(photo)
    (box,) = detect_faces(image)
    expected = image.convert("RGB").crop(widen(box, image.size))
    assert list(loaded.image.getdata()) == list(expected.getdata())
    assert loaded.image.mode == "RGB" and loaded.face_size == box.size
    files = _entry_files(cache)
    assert set(files) == {".json", ".png"}
    meta = json.loads(files[".json"].read_text())
    assert meta["box"] == box.to_dict() and meta["margin"] == FACE_MARGIN
    assert meta["crop_box"] == list(widen(box, image.size)) and meta["size"] == list(expected.size)
    assert not list(cache.directory.rglob("*.partial"))


def _damage_png(files: dict[str, Path]) -> None:
    files[".png"].write_bytes(b"\x89PNG broken")


def _truncate_metadata(files: dict[str, Path]) -> None:
    files[".json"].write_text(files[".json"].read_text()[:40])


def _stale_format(files: dict[str, Path]) -> None:
    meta = json.loads(files[".json"].read_text())
    meta["format"] = 0
    files[".json"].write_text(json.dumps(meta))


def _other_image(files: dict[str, Path]) -> None:
    # a well-formed PNG with a matching hash, but not the size the metadata promises
    import hashlib
    from io import BytesIO

    buffer = BytesIO()
    Image.new("RGB", (3, 3)).save(buffer, format="PNG")
    files[".png"].write_bytes(buffer.getvalue())
    meta = json.loads(files[".json"].read_text())
    meta["png_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    files[".json"].write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_damage_png, "image hash mismatch"),
        (_truncate_metadata, "unreadable"),
        (_stale_format, "stale"),
        (_other_image, "inconsistent"),
    ],
)
def test_damaged_entry_is_rebuilt_with_a_warning(photo: Path, tmp_path: Path, damage, reason: str) -> None:
    cache = ReferenceCache(tmp_path / "refs")
    reference = list(cache.get_photo(photo).image.getdata())
    damage(_entry_files(cache))
    with pytest.warns(ReferenceCacheWarning, match=reason):
        rebuilt = cache.get_photo(photo)
    assert not rebuilt.hit and list(rebuilt.image.getdata()) == reference
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get_photo(photo).hit


def test_key_follows_photo_bytes_face_choice_and_margin(photo: Path, t1_jpg: Path, tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path / "refs")
    cache.get_photo(photo)
    Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo)  # other bytes
    cache.get_photo(photo)
    ReferenceCache(tmp_path / "refs", margin=0.4).get_photo(photo)
    group = tmp_path / "group.jpg"
    group.write_bytes(t1_jpg.read_bytes())
    second, fourth = cache.get_photo(group, face=2), cache.get_photo(group, face=4)
    assert len(list(cache.directory.glob("*/*.json"))) == 5
    boxes = detect_faces(load_photo(group))
    assert second.face_size == boxes[1].size and fourth.face_size == boxes[3].size


def test_a_group_photo_without_a_face_choice_uses_the_highest_scoring_face(
    t1_jpg: Path, tmp_path: Path
) -> None:
    cache = ReferenceCache(tmp_path / "refs")
    with pytest.warns(SeveralFacesWarning, match="shows 6 faces and none is chosen: face 1 "):
        auto = cache.get_photo(t1_jpg)
    assert auto.image.tobytes() == cache.get_photo(t1_jpg, face=1).image.tobytes()


def test_a_person_gets_the_first_or_the_best_photo(photo: Path, tmp_path: Path) -> None:
    blurred = tmp_path / "blurred.png"
    Image.open(photo).filter(ImageFilter.GaussianBlur(3)).save(blurred)
    cache = ReferenceCache(tmp_path / "refs")
    photos, faces = [blurred, photo], [None, None]
    sharp = cache.get_photo(photo)
    soft = cache.get_photo(blurred)
    assert sharp.quality > soft.quality
    assert list(cache.get_person(photos, faces, "first").getdata()) == list(soft.image.getdata())
    for combine in ("best", "mean"):  # pixels cannot be averaged: mean means the best photo
        assert list(cache.get_person(photos, faces, combine).getdata()) == list(sharp.image.getdata())
    with pytest.raises(ValueError, match="combine"):
        cache.get_person(photos, faces, "median")


def test_missing_photos_are_errors(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path / "refs")
    with pytest.raises(StoryreelError, match="without photos"):
        cache.get_person([], [])
    with pytest.raises(StoryreelError, match="photo not found"):
        cache.get_person([tmp_path / "nope.jpg"], [None])


def test_a_face_choice_is_applied_as_planned(t1_jpg: Path, tmp_path: Path) -> None:
    from storyreel.cast import FaceChoice

    group = tmp_path / "group.jpg"
    group.write_bytes(t1_jpg.read_bytes())
    cache = ReferenceCache(tmp_path / "refs")
    by_number = cache.get_photo(group, 3)
    by_choice = cache.get_photo(group, FaceChoice(face=3))
    assert by_choice.hit and list(by_choice.image.getdata()) == list(by_number.image.getdata())
    box = detect_faces(load_photo(group))[2]
    assert by_number.image.size == Image.open(group).crop(widen(box, load_photo(group).size)).size
