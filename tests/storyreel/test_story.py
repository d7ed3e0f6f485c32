"""story.yaml: models, resolution of defaults and cast order, and file:line:column problems."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from storyreel.errors import StoryreelError
from storyreel.story import (
    MAX_PROBLEMS_SHOWN,
    Shot,
    Story,
    StoryValidationError,
    load_story,
    parse_story,
    placeholders,
    story_json_schema,
)

CASES = Path(__file__).parent / "story_cases"
EXPECT_RE = re.compile(r"^# expect: (\d+)(?::(\d+))? \| (.*)$", re.MULTILINE)


def make_project(root: Path, names: tuple[str, ...] = ("alice", "bob")) -> Path:
    """A project folder with one small photo per name at cast/<name>/1.jpg."""
    for name in names:
        (root / "cast" / name).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (200, 150, 120)).save(root / "cast" / name / "1.jpg")
    return root


def write(root: Path, text: str, name: str = "story.yaml") -> Path:
    path = root / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list:
    with pytest.raises(StoryValidationError) as caught:
        load_story(path)
    return caught.value.problems


VALID = """\
title: Coffee Break
output: {size: 1280x720, fps: 25, file: out/reel.webm}
defaults:
  engine: preview
  model: models/tiny
  seed: 11
  seconds: 5
  transition: {type: crossfade, seconds: 0.25}
cast:
  alice: {photos: [cast/alice/1.jpg], description: a woman with short black hair}
  bob: {photos: [./cast/bob/../bob/1.jpg], description: a tall man, face: 2, combine: first}
shots:
  - id: opening
    prompt: "{bob} and {alice} laugh at a {{cafe}} table"
    caption: Monday
  - id: close-up
    prompt: "{alice} smiles"
    cast: [alice]
    frames: 33
    seed: 5
    transition: {type: fade, seconds: 1}
  - id: Wide_2
    prompt: a street, {alice} and {bob} walking
    cast: [alice, bob]
    seconds: 3
"""


# ---------------------------------------------------------------------------------------------------
# valid stories


def test_valid_story_resolves_defaults_paths_and_cast_order(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    story = load_story(write(root, VALID))
    assert story.path == root / "story.yaml" and story.root == root
    assert (story.output.width, story.output.height, story.output.fps) == (1280, 720, 25)
    assert story.cast["alice"].photos == [root / "cast" / "alice" / "1.jpg"]
    assert story.cast["bob"].photos == [root / "cast" / "bob" / "1.jpg"]  # normalised, absolute
    assert story.cast["bob"].face == 2
    assert (story.cast["alice"].combine, story.cast["bob"].combine) == ("mean", "first")
    assert story.defaults.model == str(root / "models" / "tiny")
    assert story.model_dir == root / "models" / "tiny"
    opening, close_up, wide = story.shots
    assert opening.cast == ["bob", "alice"]  # order of the placeholders
    assert opening.seconds == 5 and opening.seed is None
    assert opening.transition.type == "crossfade" and opening.transition.seconds == 0.25
    assert close_up.cast == ["alice"] and close_up.frames == 33 and close_up.seconds == 33 / 8
    assert close_up.seed == 5 and close_up.transition.type == "fade"
    assert wide.cast == ["alice", "bob"] and wide.seconds == 3
    assert (
        opening.resolved_prompt(story)
        == "a tall man and a woman with short black hair laugh at a {cafe} table"
    )
    (warning,) = story.warnings
    assert warning.line == 5 and warning.path == "defaults.model" and "does not exist" in warning.message
    assert "storyreel models download models/tiny" in warning.hint
    (root / "models" / "tiny").mkdir(parents=True)
    assert load_story(root / "story.yaml").warnings == []


def test_load_story_accepts_a_project_folder(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    write(root, VALID)
    assert load_story(root).title == "Coffee Break"


def test_warnings_long_shots_many_people_unused_cast(tmp_path: Path) -> None:
    root = make_project(tmp_path, ("alice", "bob", "carl", "dora"))
    story = load_story(
        write(
            root,
            """\
title: Crowded
cast:
  alice: {photos: [cast/alice/1.jpg], description: a}
  bob: {photos: [cast/bob/1.jpg], description: b}
  carl: {photos: [cast/carl/1.jpg], description: c}
  dora: {photos: [cast/dora/1.jpg], description: d}
shots:
  - id: one
    prompt: "{alice}, {bob} and {carl} at a table"
    seconds: 8
  - id: two
    prompt: nobody
    frames: 60
""",
        )
    )
    found = [(w.line, w.path, w.message) for w in story.warnings]
    assert (6, "cast.dora", "'dora' appears in no shot") in found
    assert any(line == 8 and "3 people in one shot" in m and "trained with 2" in m for line, _, m in found)
    assert any(line == 8 and "8 s is longer than the model's 49 frames at 8 fps" in m for line, _, m in found)
    assert any(line == 11 and "7.5 s is longer" in m for line, _, m in found)
    assert len(found) == 4


def test_wan_vace_shots_are_checked_against_wan_limits(tmp_path: Path) -> None:
    root = make_project(tmp_path, ("alice", "bob", "carl", "dora"))
    story = load_story(
        write(
            root,
            """\
title: Mixed
defaults: {engine: wan-vace, wan_model: models/wan}
cast:
  alice: {photos: [cast/alice/1.jpg], description: a}
  bob: {photos: [cast/bob/1.jpg], description: b}
  carl: {photos: [cast/carl/1.jpg], description: c}
  dora: {photos: [cast/dora/1.jpg], description: d}
shots:
  - id: one
    prompt: "{alice}, {bob}, {carl} and {dora} at a table"
    seconds: 6
  - id: two
    prompt: "{alice} and {bob} and {carl}"
    seconds: 5
  - id: three
    prompt: "{alice} and {bob}"
    seconds: 6
    engine: ingredients
""",
        )
    )
    assert story.shots[2].engine == "ingredients" and story.defaults.wan_model == str(root / "models" / "wan")
    found = [(w.line, w.message) for w in story.warnings]
    assert any(line == 2 and "models/wan does not exist" in m for line, m in found)
    assert any(
        line == 9 and "4 people in one shot" in m and "at most 3 reference images" in m for line, m in found
    )
    assert any(line == 9 and "Wan VACE model's 81 frames at 16 fps (≈5.1 s)" in m for line, m in found)
    assert len(found) == 3  # 3 people with wan-vace, 6 s with ingredients: fine


def test_model_frames_shot_on_short_shots_is_a_warning(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    text = """\
title: Expert frames
cast:
  alice: {photos: [cast/alice/1.jpg], description: a}
defaults:
  model_frames: shot
shots:
  - {id: one, prompt: "{alice} waves", seconds: 2}
  - {id: two, prompt: "{alice} waves", seconds: 7}
  - {id: three, prompt: "{alice} waves", frames: 17, model_frames: native}
  - id: four
    prompt: "{alice} waves"
    frames: 9
    model_frames: shot
"""
    story = load_story(write(root, text))
    found = [(w.line, w.path, w.message, w.hint) for w in story.warnings]
    by_path = {path: (line, message, hint) for line, path, message, hint in found}
    line, message, hint = by_path["defaults.model_frames"]
    assert line == 5 and message.startswith("1 shot(s): model_frames: shot makes the model generate 2 s")
    assert "fewer than the 49 frames" in message and "model_frames: native" in hint
    line, message, _ = by_path["shots[3].model_frames"]
    assert line == 13 and "generate 1.125 s" in message
    assert not any("shots[2]" in path for path in by_path)  # native: the model generates 49 frames
    assert len(found) == 3  # and shot two is longer than 49 frames


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    text = "title: t\noutput:\ndefaults:\ncast:\n  # ana: {description: x}\nshots:\n  - {id: a, prompt: p}\n"
    story = load_story(write(tmp_path, text))
    assert story.cast == {} and story.output.size == "720x480" and story.defaults.seed == 2025


def test_crossfade_on_the_last_shot_is_a_warning(tmp_path: Path) -> None:
    text = "title: t\nshots:\n  - id: a\n    prompt: p\n    transition: {type: crossfade, seconds: 9}\n"
    story = load_story(write(tmp_path, text))
    (warning,) = story.warnings
    assert warning.line == 5 and "crossfade on the last shot has no next shot" in warning.message
    assert "fade" in warning.hint


def test_anchors_and_merge_keys_are_supported(tmp_path: Path) -> None:
    story = load_story(
        write(
            tmp_path,
            """\
title: Merge keys
defaults: &d {seconds: 2}
shots:
  - &first {id: a, prompt: one, transition: {type: fade, seconds: 0.5}}
  - {<<: *first, id: b}
""",
        )
    )
    assert story.shots[1].prompt == "one" and story.shots[1].transition.type == "fade"
    assert story.defaults.seconds == 2


def test_placeholders_and_escapes() -> None:
    assert placeholders("{a} meets {b_2} and {a} again, {{not}} {{ a }}") == ["a", "b_2"]
    assert placeholders("no people") == []
    for bad in ("{a", "a}", "{}", "{a b}", "{{a}"):
        with pytest.raises(ValueError):
            placeholders(bad)


def test_json_schema_describes_the_format() -> None:
    schema = story_json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["required"]) == {"title", "shots"}
    shot = schema["$defs"]["Shot"]
    assert shot["additionalProperties"] is False
    assert {"id", "prompt", "cast", "seconds", "frames", "seed", "transition", "caption"} <= set(
        shot["properties"]
    )
    assert all("description" in field for field in shot["properties"].values())


def test_story_not_loaded_from_a_file_has_no_path() -> None:
    story = Story.model_validate({"title": "t", "shots": [{"id": "a", "prompt": "p"}]})
    assert story.shots[0].seconds == 6.0
    with pytest.raises(StoryreelError, match="not loaded from a file"):
        _ = story.root


def test_shot_model_rejects_seconds_with_frames() -> None:
    with pytest.raises(ValueError, match="either seconds or frames"):
        Shot.model_validate({"id": "a", "prompt": "p", "seconds": 2, "frames": 9})


# ---------------------------------------------------------------------------------------------------
# invalid stories: every case file names its expected problems in `# expect: LINE[:COL] | words | ...`

CASE_FILES = sorted(CASES.glob("*.yaml"))


def test_there_are_many_distinct_invalid_cases() -> None:
    assert len(CASE_FILES) >= 15
    assert all(EXPECT_RE.search(case.read_text(encoding="utf-8")) for case in CASE_FILES)


@pytest.mark.parametrize("case", CASE_FILES, ids=lambda p: p.stem)
def test_invalid_story_reports_every_problem_at_its_line(case: Path, tmp_path: Path) -> None:
    root = make_project(tmp_path)
    path = root / case.name
    shutil.copy(case, path)
    expected = EXPECT_RE.findall(case.read_text(encoding="utf-8"))
    with pytest.raises(StoryValidationError) as caught:
        load_story(path)
    problems = caught.value.problems
    assert len(problems) == len(expected), "\n".join(map(str, problems))
    for line, column, words in expected:
        matches = [
            p
            for p in problems
            if p.line == int(line)
            and (not column or p.column == int(column))
            and all(w.strip() in str(p) for w in words.split(" | "))
        ]
        assert matches, f"line {line}: {words}\n got:\n" + "\n".join(map(str, problems))
    message = str(caught.value)
    assert message.count("\n") < 40  # one screen
    for problem in problems:
        assert f"{path}:{problem.line}:" in message


def test_duplicate_ids_differing_only_in_case(tmp_path: Path) -> None:
    text = "title: t\nshots:\n  - {id: Intro, prompt: a}\n  - {id: intro, prompt: b}\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert problem.line == 4 and "first used at line 3 as 'Intro'" in problem.message


def test_not_utf8_reports_the_byte_position(tmp_path: Path) -> None:
    path = tmp_path / "story.yaml"
    path.write_bytes(b"title: caf\xe9\nshots: []\n")
    (problem,) = problems_of(path)
    assert (problem.line, problem.column) == (1, 11)
    assert "not UTF-8" in problem.message and problem.hint == "save the file as UTF-8"


def test_control_characters_report_their_line(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "title: ok\nshots:\n  - id: a\x07\n"))
    assert (problem.line, problem.column) == (3, 10) and "#x0007" in problem.message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "the story is empty"),
        ("# only a comment\n", "the story is empty"),
        ("just text\n", "the top level must be a mapping"),
        ("title: a\n---\ntitle: b\n", "expected a single document"),
        ("title: !!python/object:os.system echo\nshots: []\n", "cannot read this value"),
        ("title: !custom x\nshots: []\n", "cannot read this value"),
        ("title: x\nshots: !!set {a, b}\n", "unsupported tag"),
        ("title: x\n? [a, b]\n: c\nshots: []\n", "a key must be a plain word"),
        ("title: x\nshots:\n  - {id: a, prompt: b, seed: " + "9" * 5000 + "}\n", "cannot read this value"),
    ],
)
def test_odd_documents_are_reported_not_crashed_on(tmp_path: Path, text: str, words: str) -> None:
    problems = problems_of(write(tmp_path, text))
    assert any(words in str(p) for p in problems), problems
    assert all(p.line is not None and p.column is not None for p in problems)


def test_size_limits_are_checked_quickly(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("title: x\ncredits: " + "a" * 1_100_000 + "\n")
    start = time.perf_counter()
    (problem,) = problems_of(big)
    assert "larger than 1,000,000 bytes" in problem.message
    deep = write(tmp_path, "title: " + "[" * 50_000 + "]" * 50_000 + "\n", "deep.yaml")
    (problem,) = problems_of(deep)
    assert problem.line == 1 and "nesting deeper than" in problem.message
    many = "title: x\nshots:\n" + "".join(f"  - {{id: s{i}, prompt: p}}\n" for i in range(1001))
    (problem,) = problems_of(write(tmp_path, many, "many.yaml"))
    assert problem.line == 2 and "1001 shots; at most 1000" in problem.message
    bomb = CASES / "alias_bomb.yaml"
    (problem,) = problems_of(bomb)
    assert "alias bomb" in problem.message
    assert time.perf_counter() - start < 10


def test_problem_list_is_capped_at_one_screen(tmp_path: Path) -> None:
    shots = "".join(f"  - {{id: s{i}, prompt: p, seconds: -1}}\n" for i in range(30))
    with pytest.raises(StoryValidationError) as caught:
        load_story(write(tmp_path, "title: x\nshots:\n" + shots))
    assert len(caught.value.problems) == 30
    message = str(caught.value)
    assert f"and {30 - MAX_PROBLEMS_SHOWN} more" in message
    assert message.count("\n") < 2 * MAX_PROBLEMS_SHOWN + 5


def test_missing_story_file_is_a_storyreel_error(tmp_path: Path) -> None:
    with pytest.raises(StoryreelError, match="story file not found"):
        load_story(tmp_path / "nope.yaml")
    with pytest.raises(StoryreelError, match="is a folder"):
        load_story(tmp_path)


def test_parse_story_uses_the_given_path_for_locations(tmp_path: Path) -> None:
    with pytest.raises(StoryValidationError) as caught:
        parse_story("title: x\nshots:\n  - {id: a, prompt: '{zed}'}\n", tmp_path / "mine.yaml")
    (problem,) = caught.value.problems
    assert str(problem.location) == f"{tmp_path / 'mine.yaml'}:3:22"
    assert "the story has no cast" in problem.hint


# ---------------------------------------------------------------------------------------------------
# contents of the files a story names


CONTENTS = """\
title: Contents
cast:
  alice:
    photos: [cast/alice/1.jpg, cast/alice/2.jpg]
    description: a woman
shots:
  - id: one
    prompt: "{alice} waves"
"""


def _second_photo(tmp_path: Path, make) -> list:
    root = make_project(tmp_path)
    make(root / "cast" / "alice" / "2.jpg")
    return problems_of(write(root, CONTENTS))


@pytest.mark.parametrize(
    "make, says",
    [
        (
            lambda p: p.symlink_to("/etc/passwd"),
            "photo 'cast/alice/2.jpg' is not an image: UnidentifiedImageError",
        ),
        (lambda p: p.write_text("just some text\n"), "is not an image: UnidentifiedImageError"),
        (lambda p: p.write_bytes(b""), "is not an image: the file is empty"),
        (lambda p: p.symlink_to("/dev/zero"), "is a character device (like /dev/zero), not a photo file"),
        (lambda p: os.mkfifo(p), "is a named pipe (FIFO), not a photo file"),
    ],
    ids=["symlink to /etc/passwd", "text", "empty", "/dev/zero", "fifo"],
)
def test_photos_are_checked_for_what_they_are(tmp_path: Path, make, says: str) -> None:
    started = time.perf_counter()
    problems = _second_photo(tmp_path, make)
    assert time.perf_counter() - started < 10  # a FIFO is never opened, /dev/zero never read
    assert len(problems) == 1 and (problems[0].line, problems[0].path) == (4, "cast.alice.photos[1]")
    assert says in problems[0].message and "did you mean" not in (problems[0].hint or "")


def test_music_is_checked_for_audio(tmp_path: Path) -> None:
    from tests.helpers.media import make_tone

    root = make_project(tmp_path)
    (root / "music").mkdir()
    text = CONTENTS.replace("cast/alice/2.jpg", "cast/alice/1.jpg") + "music: {file: music/theme.mp3}\n"
    (root / "music" / "theme.mp3").write_text("not audio at all\n" * 10)
    problems = problems_of(write(root, text))
    assert [p.line for p in problems] == [9] and "is not audio: ffmpeg finds no audio" in problems[0].message
    make_tone(root / "music" / "theme.wav", 0.5)
    os.replace(root / "music" / "theme.wav", root / "music" / "theme.mp3")  # a WAV named .mp3 is audio
    assert load_story(write(root, text)).music is not None
    make_tone(root / "music" / "theme.ogg", 0.5)
    assert load_story(write(root, text.replace("theme.mp3", "theme.ogg"))).music is not None
    os.unlink(root / "music" / "theme.mp3")
    os.mkfifo(root / "music" / "theme.mp3")
    problems = problems_of(write(root, text))
    assert "is a named pipe (FIFO), not an audio file" in problems[0].message


def test_a_story_file_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "story.yaml"
    os.mkfifo(fifo)
    with pytest.raises(StoryreelError, match=r"is a named pipe \(FIFO\), not a story file"):
        load_story(fifo)
