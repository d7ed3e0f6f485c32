"""Reel formats: ratios, sizes and presets in output.formats, their files, and validate's warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from storyreel.formats import PRESETS, parse_format, presets_table, resolve_format
from storyreel.story import StoryValidationError, load_story

REPO = Path(__file__).resolve().parents[2]


def test_ratios_take_the_clip_size_s_shorter_side_presets_their_own_size_and_fps() -> None:
    assert parse_format("16:9", 720, 480, 24) == (854, 480, 24)
    assert parse_format("9:16", 720, 480, 24) == (480, 854, 24)
    assert parse_format("1:1", 720, 480, 24) == (480, 480, 24)
    assert parse_format(" 4 : 5 ", 1920, 1080, 30) == (1080, 1350, 30)
    assert parse_format("1080x1920", 720, 480, 24) == (1080, 1920, 24)
    assert parse_format("TikTok", 720, 480, 24) == (1080, 1920, 30)
    for bad in ("9:0", "10:1", "17x17", "square", "16/9"):
        with pytest.raises(ValueError):
            parse_format(bad, 720, 480, 24)


def test_each_format_gets_its_own_file() -> None:
    base = (720, 480, 24)
    assert resolve_format("9:16", None, "out/reel-x.mp4", base).file == "out/reel-x-9x16.mp4"
    assert resolve_format("youtube-shorts", None, "reel.webm", base).file == "reel-youtube-shorts.webm"
    assert resolve_format("1:1", "square.mp4", "reel.mp4", base).file == "square.mp4"


def test_the_readme_table_is_the_presets_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert presets_table() in readme
    assert set(PRESETS) == {"instagram-reel", "instagram-feed", "tiktok", "youtube", "youtube-shorts"}


def _project(root: Path, output: str, shots: str) -> Path:
    for name in ("ann", "bob"):
        (root / "cast" / name).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16)).save(root / "cast" / name / "1.jpg")
    text = f"""\
title: Formats
output: {output}
cast:
  ann: {{photos: [cast/ann/1.jpg], description: a woman}}
  bob: {{photos: [cast/bob/1.jpg], description: a man}}
shots:
{shots}"""
    (root / "story.yaml").write_text(text, encoding="utf-8")
    return root / "story.yaml"


TWO = "  - {id: a, prompt: '{ann} and {bob} talk'}\n  - {id: b, prompt: '{ann} alone'}\n"


def test_unquoted_ratios_are_ratios_not_base_60_numbers(tmp_path: Path) -> None:
    story = load_story(
        _project(tmp_path, "{formats: [16:9, 9:16, 1:1, tiktok, {format: 4:5, file: feed.mp4}]}", TWO)
    )
    reels = story.output.reel_formats
    assert [(f.label, f.size, f.fps, f.file) for f in reels] == [
        ("16x9", "854x480", 24, "reel-16x9.mp4"),
        ("9x16", "480x854", 24, "reel-9x16.mp4"),
        ("1x1", "480x480", 24, "reel-1x1.mp4"),
        ("tiktok", "1080x1920", 30, "reel-tiktok.mp4"),
        ("4x5", "480x600", 24, "feed.mp4"),
    ]
    plain = load_story(_project(tmp_path / "plain", "{size: 640x360}", TWO))
    assert [(f.label, f.size, f.file) for f in plain.output.reel_formats] == [("", "640x360", "reel.mp4")]


def test_bad_formats_are_problems_at_their_line(tmp_path: Path) -> None:
    output = "\n  formats: [16:9, 21:1, 9:16, 9:16]\n"
    with pytest.raises(StoryValidationError) as caught:
        load_story(_project(tmp_path, output, TWO))
    (problem,) = caught.value.problems
    assert (problem.line, problem.path) == (3, "output.formats")
    assert "21:1" in problem.message and "tiktok" in problem.hint
    output = "\n  formats: [16:9, {format: 1:1, file: reel-16x9.mp4}, {format: 9:16, file: ../x.mp4}]\n"
    with pytest.raises(StoryValidationError) as caught:
        load_story(_project(tmp_path, output, TWO))
    found = [(p.path, p.message) for p in caught.value.problems]
    assert ("output.formats[1].file", "formats 1 and 2 both write reel-16x9.mp4") in found
    assert ("output.formats[2].file", "reel file '../x.mp4' is outside the project folder") in found


def test_validate_warns_when_a_format_would_be_mostly_fill(tmp_path: Path) -> None:
    story = load_story(_project(tmp_path, "{size: 720x480, formats: [16:9, 9:16]}", TWO))
    (warning,) = story.warnings
    assert warning.path == "output.formats[1]" and warning.line == 2
    assert "shows 37% of a 720x480 clip's width" in warning.message and "likely in a" in warning.message
    assert "63% of the frame becomes blurred fill" in warning.message
    alone = load_story(
        _project(tmp_path / "one", "{formats: [9:16]}", "  - {id: b, prompt: '{ann} alone'}\n")
    )
    assert [w.path for w in alone.warnings] == ["cast.bob"]  # one person always fits: no format warning


def test_the_reel_command_assembles_every_format(tmp_path_factory, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from storyreel.cli.app import app
    from storyreel.ffmpeg_tools import probe_video
    from storyreel.runner import RenderOptions, render_stories
    from tests.helpers.projects import make_project

    story = make_project(tmp_path_factory, tmp_path / "f", shots=2)
    story.write_text(story.read_text().replace("file: reel.mp4", "file: reel.mp4, formats: [1:1, 3:2]"))
    render_stories([story], RenderOptions(reel=False))
    result = CliRunner().invoke(app, ["reel", str(story), "--format", "webm"])
    assert result.exit_code == 0, result.output
    root = story.parent
    assert probe_video(root / "reel-1x1.webm").width == 96
    assert probe_video(root / "reel-3x2.webm").width == 144
    assert result.output.count("reel:") == 2
    page = (root / "renders" / "index.html").read_text()
    assert "reel-1x1.webm" in page and "reel-3x2.webm" in page
    json_run = CliRunner().invoke(app, ["reel", str(story), str(tmp_path / "none"), "--json", "--no-review"])
    assert json_run.exit_code == 1  # the missing story fails; the other is assembled and described
    document = json.loads(json_run.stdout)
    assert document["schema"] == "storyreel.reel/1" and document["ok"] is False
    done, missing = document["stories"]
    assert done["status"] == "ok" and missing["status"] == "failed" and "reels" not in missing
    assert [(r["format"], r["width"], r["shots"]) for r in done["reels"]] == [
        ("1x1", 96, ["s1", "s2"]),
        ("3x2", 144, ["s1", "s2"]),
    ]
    assert done["reels"][0]["path"] == str(root / "reel-1x1.mp4") and done["review"] is None
    assert "reel:" in json_run.stderr  # human text on stderr under --json
