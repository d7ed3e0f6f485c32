"""Project folders and `init`: the template, the example project and its cast photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from storyreel.errors import StoryreelError
from storyreel.example import CROP_SIZE, EXAMPLE_CAST
from storyreel.ffmpeg_tools import find_font
from storyreel.project import Project, init_project, template_text
from storyreel.story import load_story
from tests.helpers.media import make_tone

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The example project, created once for this module."""
    return init_project(tmp_path_factory.mktemp("example") / "demo", example=True)


def test_init_writes_a_valid_commented_template(tmp_path: Path) -> None:
    project = init_project(tmp_path / "new")
    assert project.story_path == tmp_path / "new" / "story.yaml"
    assert project.cast_dir.is_dir() and project.renders_dir.is_dir()
    text = project.story_path.read_text(encoding="utf-8")
    assert text == template_text("story.yaml")
    assert text.count("\n#") > 10  # commented
    story = load_story(project.story_path)
    assert story.title == "My story" and len(story.shots) == 1 and story.warnings == []
    assert not list(project.root.glob("**/*.partial"))


def test_init_refuses_to_overwrite_a_story(tmp_path: Path) -> None:
    project = init_project(tmp_path)
    project.story_path.write_text("title: mine\n", encoding="utf-8")
    with pytest.raises(StoryreelError, match="already exists; not overwriting") as caught:
        init_project(tmp_path, example=True)
    assert caught.value.hint
    assert project.story_path.read_text(encoding="utf-8") == "title: mine\n"
    assert not (project.cast_dir / "nora").exists()


def test_init_refuses_a_file_as_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoryreelError, match="not a folder"):
        init_project(tmp_path / "file")


def test_example_project_validates(example: Project) -> None:
    story = load_story(example.story_path)
    assert len(story.shots) >= 3 and 2 <= len(story.cast) <= 3
    assert all(shot.caption for shot in story.shots)
    assert {shot.transition.type for shot in story.shots} >= {"crossfade", "fade"}
    assert story.warnings == []
    assert example.story_path.read_text(encoding="utf-8") == template_text("example_story.yaml")


def test_example_photos_show_one_face_each_and_different_people(example: Project) -> None:
    from ingredients_model.face_tools import detect_faces, face_descriptor, face_distance

    descriptors = []
    for photo in EXAMPLE_CAST:
        path = example.cast_dir / photo.name / "1.jpg"
        image = Image.open(path).convert("RGB")
        assert image.size == (CROP_SIZE, CROP_SIZE)
        boxes = detect_faces(image)
        assert len(boxes) == 1, photo.name
        assert boxes[0].width < CROP_SIZE / 2  # head and shoulders, not a face close-up
        descriptors.append(face_descriptor(image, boxes[0]))
    for i in range(len(descriptors)):
        for j in range(i + 1, len(descriptors)):
            assert face_distance(descriptors[i], descriptors[j]) > 0.6


def test_projects_example_matches_the_template() -> None:
    text = (REPO / "projects_example" / "story.yaml").read_text(encoding="utf-8")
    assert text == template_text("example_story.yaml")
    assert "storyreel init DIR --example" in (REPO / "projects_example" / "README.md").read_text()


def test_the_format_reference_in_projects_example_is_a_valid_story(tmp_path: Path) -> None:
    readme = (REPO / "projects_example" / "README.md").read_text(encoding="utf-8")
    reference = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "cast" / "nora").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "cast" / "nora" / "1.jpg")
    (tmp_path / "music").mkdir()
    make_tone(tmp_path / "music" / "theme.mp3", 0.5)
    (tmp_path / "brand").mkdir()
    Image.new("RGBA", (40, 20)).save(tmp_path / "brand" / "logo.png")
    shutil.copyfile(find_font(), tmp_path / "brand" / "font.ttf")
    (tmp_path / "story.yaml").write_text(reference, encoding="utf-8")
    story = load_story(tmp_path / "story.yaml")
    assert story.shots[0].resolved_prompt(story).endswith("kitchen table, a {TV} on")
    assert [w.path for w in story.warnings] == ["defaults.model", "defaults.wan_model"]
    assert story.title == "Launch Day with coffee"
    assert [f.file for f in story.output.reel_formats] == [
        "reel-coffee-16x9.mp4",
        "reel-coffee-9x16.mp4",
        "reel-coffee-tiktok.mp4",
    ]
    assert story.brand.end_card.url == "shop.example.com/coffee"


def test_project_paths(tmp_path: Path) -> None:
    project = init_project(tmp_path / "p")
    root = project.root
    assert project.state_dir == root / ".storyreel"
    assert project.cache_dir == root / ".storyreel" / "cache"
    assert project.identity_cache_dir == root / ".storyreel" / "cache" / "identities"
    assert project.text_cache_dir == root / ".storyreel" / "cache" / "text"
    assert project.lock_path == root / ".storyreel" / "lock"
    assert project.clip_path("intro") == root / "renders" / "intro.mp4"
    assert project.clip_meta_path("intro") == root / "renders" / "intro.json"
    assert project.review_path == root / "renders" / "index.html"
    assert project.reel_path == root / "reel.mp4"
    with pytest.raises(StoryreelError, match="bad shot id"):
        project.clip_path("../escape")


def test_project_from_story_follows_output_file(tmp_path: Path) -> None:
    project = init_project(tmp_path)
    text = project.story_path.read_text(encoding="utf-8").replace("file: reel.mp4", "file: out/final.webm")
    project.story_path.write_text(text, encoding="utf-8")
    story = load_story(project.story_path)
    from_story = Project.from_story(story)
    assert from_story.root == tmp_path and from_story.reel_path == tmp_path / "out" / "final.webm"
    assert project.load_story().output.file == "out/final.webm"


def test_project_find(tmp_path: Path) -> None:
    project = init_project(tmp_path / "p")
    (project.root / "renders" / "sub").mkdir()
    assert Project.find(project.root).story_path == project.story_path
    assert Project.find(project.story_path).root == project.root
    assert Project.find(project.root / "renders" / "sub").root == project.root
    with pytest.raises(StoryreelError, match="does not exist"):
        Project.find(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoryreelError, match=r"no story\.yaml"):
        Project.find(tmp_path / "empty")
