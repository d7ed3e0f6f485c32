"""storyreel.cast: adding people from real photos, choosing faces, identity checks, list/show/remove."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from ingredients_model.face_tools import FaceBox, detect_faces, load_photo
from storyreel.cast import (
    CROP_SIZE,
    FaceChoice,
    SeveralFacesWarning,
    add_cast_member,
    choose_face,
    face_crop,
    list_cast,
    read_faces,
    remove_cast_member,
    resolve_face,
    validate_name,
    write_cast_sheet,
)
from storyreel.errors import StoryreelError
from storyreel.fsutil import file_sha256
from storyreel.project import Project
from storyreel.story import CastMember, load_story

STORY = "title: t\nshots: [{id: a, prompt: hi}]\n"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "story.yaml").write_text(STORY)
    return Project.find(tmp_path)


@pytest.fixture(scope="module")
def t1_boxes(t1_jpg: Path) -> list[FaceBox]:
    return detect_faces(load_photo(t1_jpg))


@pytest.fixture(scope="module")
def mirrored_t1(t1_jpg: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mirror") / "t1_mirrored.jpg"
    ImageOps.mirror(Image.open(t1_jpg)).save(path, quality=95)
    return path


def test_add_with_face_choice(project: Project, t1_jpg: Path, t1_boxes: list[FaceBox]) -> None:
    story_bytes = project.story_path.read_bytes()
    result = add_cast_member(project, "ana", [t1_jpg], description="a woman with dark hair", face=2)
    folder = project.cast_dir / "ana"
    assert result.directory == folder and not result.unchanged and not result.warnings
    (entry,) = result.added
    assert entry.face == 2 and entry.faces_found == 6 and entry.box == t1_boxes[1]
    assert (folder / "t1.jpg").read_bytes() == t1_jpg.read_bytes()
    assert entry.sha256 == file_sha256(t1_jpg)
    with Image.open(folder / entry.crop) as crop:
        assert crop.size == (CROP_SIZE, CROP_SIZE)
    saved = json.loads((folder / "faces.json").read_text())
    assert saved["description"] == "a woman with dark hair"
    assert saved["photos"][0]["box"] == t1_boxes[1].to_dict() and len(saved["photos"][0]["descriptor"]) == 128
    assert result.snippet.splitlines() == [
        "cast:",
        "  ana:",
        "    photos: [cast/ana/t1.jpg]",
        '    description: "a woman with dark hair"',
        "    face: 2",
    ]
    assert project.story_path.read_bytes() == story_bytes  # never edits story.yaml


def test_repeating_an_add_changes_nothing(project: Project, t1_jpg: Path) -> None:
    add_cast_member(project, "ana", [t1_jpg], face=2)
    faces = project.cast_dir / "ana" / "faces.json"
    before = faces.stat().st_mtime_ns, faces.read_bytes()
    again = add_cast_member(project, "ana", [t1_jpg], face=2)
    assert not again.added and [e.photo for e in again.unchanged] == ["t1.jpg"]
    assert faces.read_bytes() == before[1]
    assert not add_cast_member(project, "ana", [t1_jpg]).added  # no --face: keeps the recorded choice
    twice = add_cast_member(project, "bo", [t1_jpg, t1_jpg], face=4)
    assert len(twice.added) == 1 and len(twice.unchanged) == 1
    switched = add_cast_member(project, "ana", [t1_jpg], face=3)  # same photo, other face: replaced
    assert [e.face for e in switched.photos] == [3]
    assert sorted(p.name for p in (project.cast_dir / "ana").iterdir()) == ["crops", "faces.json", "t1.jpg"]


def test_a_group_photo_without_a_choice_uses_the_highest_scoring_face(
    project: Project, t1_jpg: Path, t1_boxes: list[FaceBox]
) -> None:
    best = max(range(len(t1_boxes)), key=lambda i: t1_boxes[i].score) + 1  # as the released code chooses
    with pytest.warns(SeveralFacesWarning) as caught:
        result = add_cast_member(project, "ana", [t1_jpg])
    message = str(caught[0].message)
    assert f"{t1_jpg} shows 6 faces and none is chosen: face {best} (from the left)" in message
    assert "--face K" in message and "released Ingredients code" in message
    preview = project.state_dir / "faces" / "t1-faces.png"
    assert f"numbered preview: {preview}" in message
    with Image.open(preview) as image:
        assert image.size == (1024, 708)
    assert [p.face for p in result.photos] == [best]  # recorded: every engine uses this face
    with pytest.raises(StoryreelError, match="face 7 was asked for"):
        add_cast_member(project, "ana", [t1_jpg], face=7)


def test_no_face_and_unreadable_photos(project: Project, tmp_path: Path) -> None:
    from skimage import data

    landscape = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(landscape)
    with pytest.raises(StoryreelError) as info:
        add_cast_member(project, "ana", [landscape])
    assert info.value.message == f"no face found in {landscape}"
    assert "frontal" in info.value.hint
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(StoryreelError, match=r"cannot read photo .*broken\.jpg"):
        add_cast_member(project, "ana", [broken])
    assert not (project.cast_dir / "ana").exists()


NFD_JOSE = "jose\u0301"  # "josé" as macOS keyboards and file names often spell it


@pytest.mark.parametrize(
    "name",
    ["Ana", "José", "ZOË", "Дмитрий", "ana smith", "9lives", "-x", "", "a" * 65, "李" * 81, "../x", "ana.b",
     "a/b", "ana\u200b", "smile😀", "\u0301e"],
)  # fmt: skip
def test_bad_names(name: str) -> None:
    with pytest.raises(StoryreelError, match="invalid cast name") as err:
        validate_name(name)
    assert "letters of any script" in (err.value.hint or "")


def test_good_names_in_any_script() -> None:
    for name in (
        "ana",
        "old_tom",
        "_x",
        "bob-2",
        "josé",
        "zoë",
        "李",
        "李小龙",
        "дмитрий",
        "राम",
        "straße",
        "a" * 64,
    ):
        assert validate_name(name) == name
    assert validate_name(NFD_JOSE) == "josé" and len(validate_name(NFD_JOSE)) == 4


def test_a_name_in_any_script_is_its_folder(project: Project, astronaut_png: Path) -> None:
    for typed, stored in ((NFD_JOSE, "josé"), ("李", "李"), ("zoë", "zoë")):
        result = add_cast_member(project, typed, [astronaut_png], description="an astronaut")
        assert result.name == stored and result.directory == project.cast_dir / stored
    names = sorted(os.listdir(os.fsencode(project.cast_dir)))
    assert names == sorted(name.encode() for name in ("josé", "李", "zoë"))  # NFC bytes on disk
    again = add_cast_member(project, "josé", [astronaut_png])  # NFC now, NFD before: the same person
    assert again.added == [] and len(again.unchanged) == 1
    assert [row.name for row in list_cast(project)] == sorted(["josé", "李", "zoë"])
    (project.root / "story.yaml").write_text(
        "title: Names\ncast:\n"
        + "".join(f"  {n}: {{photos: [cast/{n}/astronaut.png], description: {n}}}\n" for n in ("josé", "李"))
        + f'shots:\n  - id: one\n    prompt: "{{{NFD_JOSE}}} and {{李}} wave"\n',
        encoding="utf-8",
    )
    story = load_story(project.root / "story.yaml")
    assert (
        story.shots[0].cast == ["josé", "李"] and story.shots[0].resolved_prompt(story) == "josé and 李 wave"
    )


@pytest.mark.slow
def test_lookalike_warnings(project: Project, t1_jpg: Path, mirrored_t1: Path, astronaut_png: Path) -> None:
    add_cast_member(project, "ana", [t1_jpg], face=2)
    # the same woman (mirrored photo: she is 5th from the left) under another name
    twin = add_cast_member(project, "anna", [mirrored_t1], face=5)
    assert any("anna looks like existing cast member ana" in w for w in twin.warnings)
    other = add_cast_member(project, "ross", [t1_jpg], face=3)
    assert not other.warnings
    # a second photo of ana showing someone else
    mixed = add_cast_member(project, "ana", [astronaut_png])
    assert [e.photo for e in mixed.photos] == ["t1.jpg", "astronaut.png"]
    assert any("t1.jpg and astronaut.png of ana look like different people" in w for w in mixed.warnings)
    # a second photo of the same person is fine
    same = add_cast_member(project, "ross", [mirrored_t1], face=4)
    assert not [w for w in same.warnings if "different people" in w]
    assert len(same.photos) == 2


def test_name_clash_of_different_files(project: Project, astronaut_png: Path, tmp_path: Path) -> None:
    other = tmp_path / "x" / "astronaut.png"
    other.parent.mkdir()
    ImageOps.mirror(Image.open(astronaut_png)).save(other)
    result = add_cast_member(project, "eileen", [astronaut_png, other])
    assert [e.photo for e in result.photos] == ["astronaut.png", "astronaut-2.png"]
    assert (project.cast_dir / "eileen" / "astronaut-2.png").read_bytes() == other.read_bytes()


def test_a_recorded_box_without_its_record_finds_its_face(t1_jpg: Path, t1_boxes: list[FaceBox]) -> None:
    """A job's recorded face (``box=…``) on a photo whose ``faces.json`` is not beside it: the face it
    overlaps most; none at all is an error naming the choice, never another face."""
    third = t1_boxes[2]
    shifted = FaceBox(third.left + 5, third.top - 4, third.right + 5, third.bottom - 4)
    resolved = resolve_face(t1_jpg, FaceChoice(box=shifted))
    assert resolved.face == 3 and resolved.box == third
    with pytest.raises(StoryreelError, match=r"the face recorded for .*t1\.jpg \(box=0,0,10,10\)"):
        resolve_face(t1_jpg, FaceChoice(box=FaceBox(0, 0, 10, 10)))


def test_face_crop_uses_the_record_or_computes(
    project: Project, t1_jpg: Path, t1_boxes: list[FaceBox]
) -> None:
    add_cast_member(project, "ana", [t1_jpg], face=2)
    member = CastMember(photos=[project.cast_dir / "ana" / "t1.jpg"], description="x", face=2)
    recorded = face_crop(project, "ana", member)
    assert recorded.size == (CROP_SIZE, CROP_SIZE)
    with Image.open(project.cast_dir / "ana" / "crops" / "t1.png") as stored:
        assert list(recorded.getdata()) == list(stored.convert("RGB").getdata())
    outside = CastMember(photos=[t1_jpg], description="x", face=2)  # no faces.json next to it
    computed = face_crop(project, "ana", outside)
    assert list(computed.getdata()) == list(recorded.getdata())
    other = face_crop(project, "ana", CastMember(photos=[t1_jpg], description="x", face=4))
    assert list(other.getdata()) != list(recorded.getdata())
    with pytest.warns(SeveralFacesWarning, match="shows 6 faces and none is chosen: face 1 "):
        auto = face_crop(project, "ana", CastMember(photos=[t1_jpg], description="x", face=None))
    first = face_crop(project, "ana", CastMember(photos=[t1_jpg], description="x", face=1))
    assert list(auto.getdata()) == list(first.getdata())  # face 1 scores highest in t1.jpg


def test_list_show_remove(
    project: Project, t1_jpg: Path, astronaut_png: Path, t1_boxes: list[FaceBox]
) -> None:
    assert list_cast(project) == []
    add_cast_member(project, "ana", [t1_jpg], face=2)
    add_cast_member(project, "eileen", [astronaut_png], description="an astronaut")
    rows = list_cast(project)
    assert [(r.name, r.photos, r.face_size) for r in rows] == [
        ("ana", 1, t1_boxes[1].size),
        ("eileen", 1, 88),
    ]
    sheet = write_cast_sheet(project, "ana")
    assert sheet == project.state_dir / "sheets" / "ana.png"
    with Image.open(sheet) as image:
        assert image.width == 256 and image.height > 256
    with pytest.raises(StoryreelError, match="no cast member bob") as info:
        write_cast_sheet(project, "bob")
    assert "ana, eileen" in info.value.hint
    removed = remove_cast_member(project, "ana")
    assert not removed.exists() and [r.name for r in list_cast(project)] == ["eileen"]
    with pytest.raises(StoryreelError, match="no cast member ana"):
        remove_cast_member(project, "ana")


def test_damaged_faces_json_is_reported(project: Project, t1_jpg: Path) -> None:
    add_cast_member(project, "ana", [t1_jpg], face=2)
    (project.cast_dir / "ana" / "faces.json").write_text("{not json")
    with pytest.raises(StoryreelError, match="damaged"):
        read_faces(project.cast_dir / "ana")


def test_the_face_choice_has_one_spelling(project: Project, t1_jpg: Path) -> None:
    for token in ("auto", "face=3", "box=10,20,110,140"):
        assert FaceChoice.parse(token).token == token
    with pytest.raises(ValueError):
        FaceChoice.parse("box:1,2,3,4")
    photo = project.cast_dir / "ana" / "t1.jpg"
    entry = add_cast_member(project, "ana", [t1_jpg], face=3).photos[0]
    recorded = choose_face(photo)
    assert recorded == choose_face(photo, 3) and recorded.same_box(entry.box)
    assert recorded.token == f"box={entry.box.left},{entry.box.top},{entry.box.right},{entry.box.bottom}"
    assert choose_face(photo, 2) == FaceChoice(face=2)  # another face than the recorded one
    assert choose_face(t1_jpg, None).token == "auto"  # no record next to it
    assert resolve_face(photo, recorded).box == entry.box
