"""Offline dlib face tools and photo loading, on real photos shipped by installed packages."""

from __future__ import annotations

import io
import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from ingredients_model.errors import IngredientsError
from ingredients_model.face_tools import (
    SAME_PERSON_THRESHOLD,
    FaceBox,
    align_face,
    annotate_faces,
    detect_faces,
    face_descriptor,
    face_distance,
    face_landmarks,
    face_sharpness,
    load_photo,
)


@pytest.fixture(scope="module")
def t1(t1_jpg: Path) -> Image.Image:
    return load_photo(t1_jpg)


@pytest.fixture(scope="module")
def t1_faces(t1: Image.Image) -> list[FaceBox]:
    return detect_faces(t1)


@pytest.fixture(scope="module")
def astronaut(astronaut_png: Path) -> Image.Image:
    return load_photo(astronaut_png)


def test_six_people_found_left_to_right(t1: Image.Image, t1_faces: list[FaceBox]) -> None:
    assert t1.size == (1024, 708)  # 1280x886 downscaled to a 1024 long side
    start = time.perf_counter()
    boxes = detect_faces(t1)
    print(f"detect 6 faces on 1024x708: {time.perf_counter() - start:.3f}s")
    assert boxes == t1_faces and len(boxes) == 6
    centres = [b.center[0] for b in boxes]
    assert centres == sorted(centres)
    for box in boxes:
        assert 0 <= box.left < box.right <= t1.width and 0 <= box.top < box.bottom <= t1.height
        assert 60 <= box.size <= 140


def test_astronaut_has_one_face(astronaut: Image.Image) -> None:
    boxes = detect_faces(astronaut)
    assert len(boxes) == 1
    left, top = boxes[0].center
    assert 170 < left < 280 and 80 < top < 180  # her face, upper middle-left of the 512x512 photo


def test_landmarks_and_aligned_crop(t1: Image.Image, t1_faces: list[FaceBox]) -> None:
    box = t1_faces[2]
    five = face_landmarks(t1, box)
    sixty_eight = face_landmarks(t1, box, points=68)
    assert five.shape == (5, 2) and sixty_eight.shape == (68, 2)
    inside = (five[:, 0] > box.left - 10) & (five[:, 0] < box.right + 10)
    assert inside.all()
    crop = align_face(t1, box, size=256)
    assert crop.size == (256, 256) and crop.mode == "RGB"
    # the aligned crop holds the same face: its descriptor matches the original's
    crop_boxes = detect_faces(crop)
    assert len(crop_boxes) == 1
    distance = face_distance(face_descriptor(crop, crop_boxes[0]), face_descriptor(t1, box))
    assert distance < SAME_PERSON_THRESHOLD


def test_distinct_people_have_distinct_descriptors(
    t1: Image.Image, t1_faces: list[FaceBox], astronaut: Image.Image
) -> None:
    start = time.perf_counter()
    descriptors = [face_descriptor(t1, box) for box in t1_faces]
    print(f"128-d descriptor: {(time.perf_counter() - start) / len(t1_faces):.3f}s per face")
    descriptors.append(face_descriptor(astronaut, detect_faces(astronaut)[0]))
    assert all(d.shape == (128,) for d in descriptors)
    distances = [face_distance(a, b) for a, b in itertools.combinations(descriptors, 2)]
    print(f"different people: min distance {min(distances):.3f}")
    assert min(distances) > SAME_PERSON_THRESHOLD


def test_mirrored_photo_is_the_same_person(t1: Image.Image, t1_faces: list[FaceBox]) -> None:
    mirrored = ImageOps.mirror(t1)
    boxes = detect_faces(mirrored)
    assert len(boxes) == 6
    for i in (0, 3):
        original = face_descriptor(t1, t1_faces[i])
        same = face_descriptor(mirrored, boxes[5 - i])  # left to right order is reversed
        assert face_distance(original, same) < SAME_PERSON_THRESHOLD
        assert face_distance(original, face_descriptor(mirrored, boxes[i])) > SAME_PERSON_THRESHOLD


def test_face_box_round_trip_and_iou() -> None:
    box = FaceBox(10, 20, 110, 120, 1.5)
    assert FaceBox.from_dict(box.to_dict()) == box
    assert box.iou(box) == 1.0
    assert box.iou(FaceBox(110, 20, 210, 120)) == 0.0
    assert box.size == 100 and box.center == (60.0, 70.0)


def test_sharpness_prefers_sharp_faces(astronaut: Image.Image) -> None:
    from PIL import ImageFilter

    box = detect_faces(astronaut)[0]
    blurred = astronaut.filter(ImageFilter.GaussianBlur(4))
    assert face_sharpness(astronaut, box) > 3 * face_sharpness(blurred, box)


def test_annotate_faces_draws_boxes(t1: Image.Image, t1_faces: list[FaceBox]) -> None:
    preview = annotate_faces(t1, t1_faces)
    assert preview.size == t1.size
    box = t1_faces[0]
    assert tuple(np.asarray(preview)[box.bottom - 1, (box.left + box.right) // 2]) == (255, 40, 40)
    assert np.asarray(t1)[box.bottom - 1, (box.left + box.right) // 2].tolist() != [255, 40, 40]


# ------------------------------------------------------------------------------------------ photos


def _save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("orientation, rotate", [(6, 90), (8, -90), (3, 180)])
def test_exif_orientation_is_applied(
    astronaut: Image.Image, tmp_path: Path, orientation: int, rotate: int
) -> None:
    # a phone stores the sensor image rotated and records how to turn it upright
    stored = astronaut.rotate(rotate, expand=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(stored, tmp_path / "phone.jpg", exif=exif, quality=95)
    assert detect_faces(Image.open(path).convert("RGB")) == []  # sideways: no frontal face
    upright = load_photo(path)
    assert upright.size == astronaut.size
    assert len(detect_faces(upright)) == 1


def test_rgba_is_composited_on_white(astronaut: Image.Image, tmp_path: Path) -> None:
    rgba = astronaut.convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, dtype=np.uint8)
    alpha[:, 400:] = 0  # right strip fully transparent
    rgba.putalpha(Image.fromarray(alpha))
    image = load_photo(_save(rgba, tmp_path / "alpha.png"))
    assert image.mode == "RGB"
    assert tuple(np.asarray(image)[10, 450]) == (255, 255, 255)
    assert len(detect_faces(image)) == 1


@pytest.mark.parametrize(
    "mode, name", [("L", "grey.png"), ("CMYK", "cmyk.jpg"), ("P", "palette.png"), ("I;16", "g16.png")]
)
def test_other_modes_become_rgb(astronaut: Image.Image, tmp_path: Path, mode: str, name: str) -> None:
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(astronaut.convert("L"), dtype=np.uint16) * 257)
    else:
        converted = astronaut.convert(mode)
    path = _save(converted, tmp_path / name)
    with Image.open(path) as raw:
        assert raw.mode == mode
    image = load_photo(path)
    assert image.mode == "RGB" and image.size == astronaut.size
    assert len(detect_faces(image)) == 1


def test_huge_photo_is_downscaled(astronaut: Image.Image, tmp_path: Path) -> None:
    big = astronaut.resize((3600, 3600), Image.Resampling.BILINEAR)
    path = _save(big, tmp_path / "huge.jpg", quality=90)
    start = time.perf_counter()
    image = load_photo(path)
    print(f"load 3600x3600 JPEG: {time.perf_counter() - start:.3f}s")
    assert image.size == (1024, 1024)
    assert len(detect_faces(image)) == 1
    wide = load_photo(_save(astronaut.resize((3000, 1500)), tmp_path / "wide.png"))
    assert wide.size == (1024, 512)


def test_unreadable_photos_name_the_file(astronaut: Image.Image, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    astronaut.save(buffer, format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    garbage = tmp_path / "notes.jpg"
    garbage.write_text("this is not an image")
    for path in (truncated, garbage, tmp_path / "missing.jpg"):
        with pytest.raises(IngredientsError) as info:
            load_photo(path)
        assert str(path) in info.value.message
        assert info.value.hint


def test_no_face_in_a_landscape() -> None:
    from skimage import data

    assert detect_faces(Image.fromarray(data.coffee())) == []


def test_small_faces_are_found_by_upsampling(astronaut: Image.Image) -> None:
    small = astronaut.resize((256, 256), Image.Resampling.LANCZOS)  # face ~44 px, below HOG's 80 px window
    assert detect_faces(small, upsample=0) == []
    (box,) = detect_faces(small)
    assert 30 <= box.size <= 60
