"""The clip store and the views: variants share clips by job key, stories of one project keep their own
clips, review pages, records and reels, and clips of earlier versions join the store as they are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storyreel.cli import app
from storyreel.engines.preview import PreviewEngine
from storyreel.plan import job_status, plan_story
from storyreel.project import Project
from storyreel.runner import DamagedClipWarning, RenderOptions, render_stories
from storyreel.story import load_story
from tests.helpers.projects import make_project, snapshot

VARIANT = """\
vars: {tagline: Hello, place: a kitchen}
output: {size: 160x96, fps: 12, file: "reel-${tagline}.mp4", captions: both, title_card: false}
"""


def variant_story(factory: pytest.TempPathFactory, root: Path) -> Path:
    story = make_project(factory, root, shots=3)
    text = story.read_text().replace(story.read_text().splitlines()[1] + "\n", VARIANT)
    text = text.replace("Caption 1", "${tagline}").replace("kitchen table", "table in ${place}")
    story.write_text(text)
    return story


def test_a_caption_only_variant_renders_nothing_new(tmp_path_factory, tmp_path: Path) -> None:
    story = variant_story(tmp_path_factory, tmp_path / "v")
    hello, bye = render_stories([story], RenderOptions(variables={"tagline": ["Hello", "Bye"]}))
    assert hello.rendered == ["s1", "s2", "s3"] and hello.reused == []
    assert bye.rendered == [] and sorted(bye.reused) == ["s1", "s2", "s3"]  # captions are burned in
    root = story.parent
    assert len(list((root / "renders" / "clips").glob("*.mp4"))) == 3
    assert hello.reels == [root / "reel-Hello.mp4"] and bye.reels == [root / "reel-Bye.mp4"]
    for view in ("reel-Hello", "reel-Bye"):
        assert (root / "renders" / view / "s1.mp4").samefile(root / "renders" / "reel-Bye" / "s1.mp4")
        assert (root / "renders" / view / "index.html").is_file()
        assert (root / ".storyreel" / "reels" / f"{view}.json").is_file()
    assert hello.campaign == bye.campaign == root / "campaign.html"
    page = (root / "campaign.html").read_text()
    assert "tagline=Hello" in page and "tagline=Bye" in page and "3 reused" in page
    # a prompt variant, later: only the shot whose prompt changed is rendered
    (other,) = render_stories([story], RenderOptions(variables={"tagline": ["Yo"], "place": ["a garden"]}))
    assert other.rendered == ["s1"] and sorted(other.reused) == ["s2", "s3"]
    (again,) = render_stories([story], RenderOptions(variables={"tagline": ["Bye"]}))
    assert again.rendered == again.reused == [] and again.skipped == ["s1", "s2", "s3"]


def test_a_batch_may_not_write_one_reel_twice(tmp_path_factory, tmp_path: Path) -> None:
    story = variant_story(tmp_path_factory, tmp_path / "v")
    story.write_text(story.read_text().replace("reel-${tagline}.mp4", "reel.mp4"))
    first, second = render_stories([story], RenderOptions(variables={"tagline": ["A", "B"]}, keep_going=True))
    assert first.status == "ok" and second.status == "failed"
    (failure,) = second.failures
    assert failure.message.endswith(
        "/reel.mp4 is also the reel of " + f"{story} (place=a kitchen, tagline=A)"
    )
    assert "output.file with a variable" in failure.hint


def test_two_story_files_in_one_project_do_not_clobber_each_other(tmp_path_factory, tmp_path: Path) -> None:
    story = make_project(tmp_path_factory, tmp_path / "two", shots=2, captions="both")
    root = story.parent
    vertical = root / "story_9x16.yaml"
    vertical.write_text(story.read_text().replace("160x96", "96x160").replace("file: reel.mp4, ", ""))
    first, second = render_stories([story, vertical], RenderOptions())  # one batch, one project lock
    assert first.rendered == ["s1", "s2"] and second.rendered == ["s1", "s2"]  # other sizes, other keys
    assert first.reel == root / "reel.mp4" and second.reel == root / "story_9x16.mp4"
    assert (root / "renders" / "index.html").is_file() and (
        root / "renders" / "story_9x16" / "index.html"
    ).is_file()
    before = snapshot(root / "renders") | snapshot(root, "*.mp4")
    (again,) = render_stories([vertical], RenderOptions())
    assert again.rendered == [] and again.reel_note == "reel up to date"
    loaded = load_story(story)
    jobs = plan_story(loaded, PreviewEngine().spec())
    assert {job_status(job, Project.from_story(loaded)) for job in jobs} == {"done"}
    assert snapshot(root / "renders") | snapshot(root, "*.mp4") == before  # story.yaml's files untouched
    assert "<title>Test Reel — review</title>" in (root / "renders" / "index.html").read_text()


def test_clips_of_earlier_versions_join_the_store_without_rendering(tmp_path_factory, tmp_path: Path) -> None:
    story = make_project(tmp_path_factory, tmp_path / "old", shots=2)
    render_stories([story], RenderOptions(reel=False))
    root = story.parent
    for stored in (root / "renders" / "clips").iterdir():  # as an earlier version left the project
        stored.unlink()
    (root / "renders" / "clips").rmdir()
    legacy = snapshot(root / "renders")
    text = story.read_text().replace("title: Test Reel", "title: Test Reel\nvars: {x: 1}")
    story.write_text(text)  # with variables the story gets a view of its own: renders/reel/
    loaded = load_story(story)
    project = Project.from_story(loaded)
    assert project.renders_dir == root / "renders" / "reel"
    assert {job_status(job, project) for job in plan_story(loaded, PreviewEngine().spec())} == {"stored"}
    (moved,) = render_stories([story], RenderOptions())
    assert moved.rendered == [] and sorted(moved.reused) == ["s1", "s2"] and moved.reel is not None
    assert snapshot(root / "renders") == legacy  # the old clips: same bytes, same times
    keys = [json.loads((root / "renders" / f"{s}.json").read_text())["key"] for s in ("s1", "s2")]
    for key in keys:
        assert (root / "renders" / "clips" / f"{key}.mp4").is_file()


def test_a_damaged_stored_clip_is_never_reused_and_every_view_gets_the_new_one(
    tmp_path_factory, tmp_path: Path
) -> None:
    story = variant_story(tmp_path_factory, tmp_path / "v")
    render_stories([story], RenderOptions(variables={"tagline": ["Hello", "Bye"]}))
    root = story.parent
    hello, bye = root / "renders" / "reel-Hello", root / "renders" / "reel-Bye"
    meta = json.loads((hello / "s2.json").read_text())
    stored = root / "renders" / "clips" / f"{meta['key']}.mp4"
    assert stored.samefile(hello / "s2.mp4") and stored.samefile(bye / "s2.mp4")
    assert meta["clip"]["bytes"] == stored.stat().st_size  # the record verifies the stored clip too
    with stored.open("r+b") as handle:  # damaged in place: one file, seen by the store and both views
        handle.seek(meta["clip"]["bytes"] // 2)
        handle.write(b"\0" * 64)
    loaded = load_story(story, {"tagline": "Bye"})
    statuses = {
        job.shot_id: job_status(job, Project.from_story(loaded))
        for job in plan_story(loaded, PreviewEngine().spec())
    }
    assert statuses == {"s1": "done", "s2": "damaged", "s3": "done"}
    with pytest.warns(
        DamagedClipWarning, match=r"shot s2: .*reel-Hello/s2\.mp4 is damaged \(its content differs"
    ):
        (again,) = render_stories([story], RenderOptions(variables={"tagline": ["Hello"]}))
    assert again.rendered == ["s2"] and again.reused == []  # the damaged stored copy was not linked
    assert stored.samefile(hello / "s2.mp4") and not stored.samefile(bye / "s2.mp4")
    with pytest.warns(DamagedClipWarning, match="reel-Bye/s2.mp4 is damaged"):
        (other,) = render_stories([story], RenderOptions(variables={"tagline": ["Bye"]}))
    assert other.rendered == [] and other.reused == ["s2"] and stored.samefile(bye / "s2.mp4")
    assert {
        job_status(job, Project.from_story(loaded)) for job in plan_story(loaded, PreviewEngine().spec())
    } == {"done"}


def test_reel_links_clips_the_store_holds_and_still_refuses_damaged_ones(
    tmp_path_factory, tmp_path: Path
) -> None:
    story = variant_story(tmp_path_factory, tmp_path / "v")
    render_stories([story], RenderOptions(variables={"tagline": ["Hello"]}))
    root = story.parent
    bye = ["reel", str(story), "--set", "tagline=Bye", "--no-review"]
    result = CliRunner().invoke(app, bye)  # a caption-only variant: every clip is in the store
    assert result.exit_code == 0, result.output
    assert (root / "reel-Bye.mp4").is_file()
    assert (root / "renders" / "reel-Bye" / "s1.mp4").samefile(root / "renders" / "reel-Hello" / "s1.mp4")
    (root / "renders" / "reel-Bye" / "s3.mp4").write_bytes(b"")  # the one file of the store and both views
    refused = CliRunner().invoke(app, bye)
    assert refused.exit_code == 1
    assert "1 of 3 clips do not match story.yaml for the preview engine: s3 (damaged)" in refused.stderr


def test_views_never_take_the_names_of_renders_own_folders(tmp_path_factory, tmp_path: Path) -> None:
    story = make_project(tmp_path_factory, tmp_path / "names", shots=1)
    root = story.parent
    for reel, view in (
        ("clips.mp4", "clips-reel"),
        ("cache-compare.mp4", "cache-compare-reel"),
        ("x/ad.mp4", "x-ad"),
    ):
        other = root / "other.yaml"
        other.write_text(story.read_text().replace("file: reel.mp4", f"file: {reel}"))
        project = Project.from_story(load_story(other))
        assert project.renders_dir == root / "renders" / view
        assert project.cache_compare_path == root / "renders" / view / "cache_compare.json"
