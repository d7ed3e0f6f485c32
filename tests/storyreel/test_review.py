"""The review page: valid HTML, only local existing files, everything escaped; and the contact sheet."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image

from storyreel.outputs import build_outputs
from storyreel.project import Project
from storyreel.review import write_review
from storyreel.story import load_story
from storyreel.story_reels import build_reel, build_reel_result
from tests.helpers.media import make_clip

STORY = """\
title: "Review <Test> & Co"
output: {size: 96x64, fps: 24, captions: both, title_card: false}
cast:
  ann: {photos: [cast/ann/1.png], description: an astronaut}
shots:
  - id: first
    prompt: "{ann} waves <b>hello</b> & smiles"
    caption: "<script>alert(1)</script>"
    seed: 11
  - id: second
    prompt: an empty room
  - id: third
    prompt: not rendered yet
"""


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.seeks: list[tuple[float, str]] = []  # (data-seek, href) of each "play in the reel" link
        self.sections: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [v for k, v in attrs if k in ("src", "href", "poster") and v]
        found = dict(attrs)
        if tag == "section":
            self.sections.append(str(found.get("id")))
        if tag == "a" and "data-seek" in found:
            self.seeks.append((float(found["data-seek"] or "nan"), str(found.get("href"))))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture
def project(tmp_path: Path, astronaut_png: Path) -> tuple[Path, object]:
    root = tmp_path / "proj"
    (root / "cast" / "ann").mkdir(parents=True)
    shutil.copy(astronaut_png, root / "cast" / "ann" / "1.png")
    (root / "story.yaml").write_text(STORY)
    renders = root / "renders"
    renders.mkdir()
    make_clip(renders / "first.mp4", 16)
    make_clip(renders / "second.mp4", 24, fps=24, size="96x64", source="testsrc2")
    meta = {"job": {"seed": 11, "key": "k" * 64, "engine": "preview", "prompt": "an astronaut waves"},
            "engine": "preview", "timings": {"render": 0.5}, "peak_memory_bytes": 3 * 2**20,
            "render_seconds": 0.75, "versions": {"storyreel": "0.1.0"}}  # fmt: skip
    (renders / "first.json").write_text(json.dumps(meta))
    (renders / "second.json").write_text("{not json")
    ann = {"similarity": 0.8, "frames_seen": 8}
    evaluation = {
        "backend": "arcface",
        "threshold": 0.3,
        "shots": {"first": {"frames": 8, "characters": {"ann": ann}}},
    }
    (renders / "eval.json").write_text(json.dumps(evaluation))
    return root, load_story(root / "story.yaml")


def test_review_page_is_local_escaped_and_complete(project: tuple[Path, object]) -> None:
    root, story = project
    proj = Project.from_story(story)
    (proj.renders_dir / "third.mp4").unlink(missing_ok=True)
    shots = story.shots
    story.shots = shots[:2]  # the reel needs every clip; the page copes with a missing one
    build_reel(story, proj)
    story.shots = shots
    page = write_review(story, proj)
    assert page == root / "renders" / "index.html"
    text = page.read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(text)
    parser.close()
    assert "http://" not in text and "https://" not in text
    assert parser.links, "the page links the reel, thumbnails and faces"
    for link in parser.links:
        assert not link.startswith(("/", "data:", "//")), link
        assert (page.parent / unquote(link.split("#")[0])).resolve().is_file(), link
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Review &lt;Test&gt; &amp; Co" in text
    assert {"video", "track", "table"} <= set(parser.tags)
    body = " ".join(parser.text)
    expected = ["11", "k" * 64, "preview", "0.50 s", "0.8 s", "storyreel 0.1.0", "3 MiB"]
    expected += ["ann: good resemblance (0.80)", "an astronaut waves", "not rendered yet"]
    expected += ["second.json is unreadable"]
    for item in expected:
        assert item in body, item
    thumbs = sorted(p.name for p in (root / "renders" / "thumbs").glob("first-*.jpg"))
    assert thumbs == ["first-1.jpg", "first-2.jpg", "first-3.jpg", "first-4.jpg"]
    assert (root / "renders" / "thumbs" / "cast-ann.jpg").is_file()
    assert "thumbs/cast-ann.jpg" in parser.links
    with Image.open(root / "renders" / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.width > 4 * 192
    assert not list(root.rglob("*.partial"))


def test_review_page_without_reel_or_metrics(project: tuple[Path, object]) -> None:
    root, story = project
    (root / "renders" / "eval.json").unlink()
    page = write_review(story, Project.from_story(story))
    text = page.read_text(encoding="utf-8")
    assert "<video" not in text and "No reel yet" in text
    assert "Resemblance" not in text


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    return parser


def test_each_shot_links_to_its_time_in_the_reel(project: tuple[Path, object]) -> None:
    _, story = project
    proj = Project.from_story(story)
    story.shots = story.shots[:2]
    story.shots[0].transition.type = "crossfade"  # 0.5 s overlap: the second shot starts 0.5 s early
    result = build_reel_result(story, proj)
    # first: 16 frames at 8 fps = 2 s; the second one starts 2 - 0.5 = 1.5 s in, lasts 24 frames = 1 s
    assert [(s.start, s.frames) for s in result.segments] == [(0, 48), (36, 24)]
    expected = [(0.0, "../reel.mp4#t=0.000,2.000"), (1.5, "../reel.mp4#t=1.500,2.500")]
    page = write_review(story, proj, reels=[result])
    parser = _parse(page)
    assert parser.seeks == expected
    text = page.read_text(encoding="utf-8")
    assert "0:00.00–0:02.00 in the reel" in text and "0:01.50–0:02.50 in the reel" in text
    assert '<video id="reel"' in text and text.count("<script") == 1  # only the inline seek helper
    # without a fresh assembly (as `storyreel eval` writes it): planned again from the clips
    page.unlink()
    assert _parse(write_review(story, proj)).seeks == expected


def test_the_timeline_is_recorded_with_the_reel(project: tuple[Path, object]) -> None:
    root, story = project
    proj = Project.from_story(story)
    story.shots = story.shots[:2]
    (result,), page = build_outputs(story, proj)
    assert page == proj.review_path and result.path == root / "reel.mp4"
    expected = [(0.0, "../reel.mp4#t=0.000,2.000"), (2.0, "../reel.mp4#t=2.000,3.000")]
    assert _parse(page).seeks == expected
    (root / "renders" / "second.mp4").unlink()  # the clips cannot tell any more; the record can
    assert _parse(write_review(story, proj)).seeks == expected
    (root / "reel.mp4").write_bytes(b"")  # a different file: its timeline is unknown
    assert _parse(write_review(story, proj)).seeks == []


def test_no_seek_links_without_a_reel(project: tuple[Path, object]) -> None:
    _, story = project
    parser = _parse(write_review(story, Project.from_story(story)))
    assert parser.seeks == [] and "script" not in parser.tags
    assert parser.sections == ["shot-first", "shot-second", "shot-third"]


def test_the_captions_track_escapes_cue_text(project: tuple[Path, object]) -> None:
    root, story = project
    story.shots = story.shots[:2]
    story.shots[1].caption = "Tom & Jerry -> <b>bold</b>"
    proj = Project.from_story(story)
    build_reel(story, proj)
    write_review(story, proj)
    vtt = (root / "renders" / "review-captions.vtt").read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\n" in vtt
    assert "Tom &amp; Jerry -&gt; &lt;b&gt;bold&lt;/b&gt;\n" in vtt
    cues = vtt.split("\n\n")[1:]
    assert len(cues) == 2 and all(cue.split("\n")[0].count(".") == 2 for cue in cues)  # 00:00:00.000
    webm = build_reel_result(story, proj, video_format="webm", output=root / "reel.webm")
    assert "Tom &amp; Jerry -&gt; &lt;b&gt;bold&lt;/b&gt;" in webm.subtitles.read_text(encoding="utf-8")


def test_a_full_disk_while_writing_the_review_is_a_clear_error(
    project: tuple[Path, object], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from storyreel.cli import main
    from storyreel.cli.app import console_err

    monkeypatch.setattr(console_err, "width", 400)
    root, _ = project
    story = root / "story.yaml"
    story.write_text(story.read_text().split("  - id: third")[0])  # every shot has its clip

    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(SystemExit) as exit_info:
        main(["reel", str(root), "--force"])  # hand-made clips: no records
    err = capsys.readouterr().err
    assert exit_info.value.code == 1, err
    assert "error: " in err and "no space left on the disk while writing" in err and "thumbs" in err
    assert "df -h" in err and "internal error" not in err and "OSError" not in err
    assert not list(root.rglob("*.partial"))
