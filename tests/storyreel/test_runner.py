"""The runner end to end: preview and tiny-model renders, resume, --force/--only, partial files, Ctrl-C."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from storyreel.engines.preview import PreviewEngine
from storyreel.ffmpeg_tools import probe_video
from storyreel.locking import ProjectLock
from storyreel.runner import Failure, RenderOptions, Runner, batch_totals, render_stories
from storyreel.story import load_story
from tests.helpers.projects import make_project, snapshot


def _render(paths: list[Path], **options) -> list:
    return render_stories(paths, RenderOptions(**options), Console(file=io.StringIO(), width=120))


@pytest.fixture
def project(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return make_project(tmp_path_factory, tmp_path / "demo", shots=3)


def test_preview_end_to_end_then_nothing_to_do(project: Path) -> None:
    root = project.parent
    (report,) = _render([project])
    assert report.engine == "preview" and report.rendered == ["s1", "s2", "s3"]
    assert report.reel == root / "reel.mp4" and report.review == root / "renders" / "index.html"
    reel = probe_video(root / "reel.mp4")
    assert (reel.width, reel.height) == (160, 96) and reel.duration == pytest.approx(3.0, abs=0.2)
    meta = json.loads((root / "renders" / "s2.json").read_text())
    assert meta["engine"] == "preview" and meta["key"] == meta["job"]["key"] and len(meta["key"]) == 64
    assert meta["versions"]["storyreel"] and meta["timings"] and meta["peak_memory_bytes"] > 0
    assert meta["frames"] == 12 and meta["fps"] == 12
    before = snapshot(root / "renders", "s*") | snapshot(root, "reel.mp4")
    (again,) = _render([project])
    assert again.rendered == [] and again.skipped == ["s1", "s2", "s3"]
    assert again.reel_note == "reel up to date"
    assert snapshot(root / "renders", "s*") | snapshot(root, "reel.mp4") == before
    assert not list(root.rglob("*.partial"))


def test_force_only_and_stale_shots(project: Path) -> None:
    root = project.parent
    _render([project])
    before = snapshot(root / "renders", "s*.mp4")
    (forced,) = _render([project], force=True, only=["s2"])
    assert forced.rendered == ["s2"]
    after = snapshot(root / "renders", "s*.mp4")
    assert after["s1.mp4"] == before["s1.mp4"] and after["s3.mp4"] == before["s3.mp4"]
    assert after["s2.mp4"][1] != before["s2.mp4"][1]
    project.write_text(project.read_text().replace("caption: Caption 3", "caption: Changed"))
    (stale,) = _render([project])
    assert stale.rendered == ["s3"] and stale.reel is not None and stale.reel_note == ""
    assert snapshot(root / "renders", "s1.mp4") == {"s1.mp4": after["s1.mp4"]}


def test_only_part_of_the_shots_builds_no_reel(project: Path) -> None:
    (report,) = _render([project], only=["s1"])
    assert report.rendered == ["s1"] and report.reel is None
    assert "s2, s3" in report.reel_note
    assert not (project.parent / "reel.mp4").exists()
    (rest,) = _render([project])
    assert rest.rendered == ["s2", "s3"] and rest.reel is not None


def test_partials_of_a_killed_render_are_removed(project: Path) -> None:
    renders = project.parent / "renders"
    renders.mkdir()
    (renders / "s1.mp4.partial").write_bytes(b"half a clip")
    (project.parent / "reel.mp4.partial").write_bytes(b"half a reel")
    _render([project], reel=False)
    assert not list(project.parent.rglob("*.partial"))
    assert not (project.parent / "reel.mp4").exists()


def test_interrupt_removes_the_partial_and_keeps_finished_clips(project: Path, monkeypatch) -> None:
    real = PreviewEngine.render
    calls = []

    def render(self, job, output, progress, **kw):
        calls.append(job.shot_id)
        if job.shot_id == "s2":
            output.write_bytes(b"partial frames")
            raise KeyboardInterrupt
        return real(self, job, output, progress, **kw)

    monkeypatch.setattr(PreviewEngine, "render", render)
    with pytest.raises(KeyboardInterrupt):
        _render([project])
    renders = project.parent / "renders"
    assert sorted(p.name for p in renders.iterdir() if p.is_file()) == ["s1.json", "s1.mp4"]
    assert len(list((renders / "clips").glob("*.mp4"))) == 1  # the store: s1 only
    done = snapshot(renders)
    with ProjectLock(project.parent / ".storyreel" / "lock", wait=0):  # the lock was released
        pass
    monkeypatch.setattr(PreviewEngine, "render", real)
    (report,) = _render([project])
    assert report.rendered == ["s2", "s3"] and snapshot(renders, "s1.*") == done


def test_a_batch_shares_one_engine(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    a = make_project(tmp_path_factory, tmp_path / "a", shots=1)
    b = make_project(tmp_path_factory, tmp_path / "b", shots=2)
    runner = Runner(RenderOptions(reel=False), Console(file=io.StringIO()))
    reports = runner.run([load_story(a), load_story(b)])
    assert [r.rendered for r in reports] == [["s1"], ["s1", "s2"]]
    assert len(runner.engines) == 1


@pytest.mark.slow
def test_tiny_model_end_to_end(tiny_model_dir: Path, tmp_path_factory, tmp_path: Path) -> None:
    project = make_project(tmp_path_factory, tmp_path / "m", shots=2, engine="ingredients", steps=2)
    (report,) = _render([project], model=tiny_model_dir)
    assert report.engine == "ingredients" and report.rendered == ["s1", "s2"]
    clip = probe_video(project.parent / "renders" / "s1.mp4")
    assert (clip.width, clip.height, clip.fps, clip.frames) == (96, 64, 8, 9)
    reel = probe_video(project.parent / "reel.mp4")
    assert (reel.width, reel.height, reel.fps) == (160, 96, 12)
    meta = json.loads((project.parent / "renders" / "s1.json").read_text())
    assert meta["versions"]["model_revision"] == meta["job"]["model_revision"]
    assert meta["peak_memory_kind"] == "rss" and meta["timings"]["denoise_and_decode"] > 0
    before = snapshot(project.parent / "renders", "s*")
    (again,) = _render([project], model=tiny_model_dir)
    assert again.rendered == [] and snapshot(project.parent / "renders", "s*") == before


def _fail_on(monkeypatch, shot_id: str) -> None:
    from storyreel.errors import StoryreelError

    real = PreviewEngine.render

    def render(self, job, output, progress, **kw):
        if job.shot_id == shot_id:
            output.write_bytes(b"half")
            raise StoryreelError("no face found in cast/sam/1.jpg", "use a clearer photo")
        return real(self, job, output, progress, **kw)

    monkeypatch.setattr(PreviewEngine, "render", render)


def test_a_failing_shot_stops_a_story_by_default_and_names_story_and_shot(project: Path, monkeypatch) -> None:
    _fail_on(monkeypatch, "s2")
    log = io.StringIO()
    (report,) = render_stories([project], RenderOptions(), Console(file=log, width=200))
    assert report.status == "failed" and report.rendered == ["s1"] and report.failed_shots == ["s2"]
    assert report.failures == [Failure("no face found in cast/sam/1.jpg", "use a clearer photo", "s2")]
    assert report.reel is None and not (project.parent / "reel.mp4").exists()
    assert "story.yaml: shot s2: no face found in cast/sam/1.jpg" in log.getvalue()
    assert "hint: use a clearer photo" in log.getvalue()
    assert not list(project.parent.rglob("*.partial"))
    assert report.to_json()["shots"] == {"rendered": ["s1"], "reused": [], "current": [], "failed": ["s2"]}


def test_keep_going_finishes_the_batch(tmp_path_factory, tmp_path: Path, monkeypatch) -> None:
    a = make_project(tmp_path_factory, tmp_path / "a", shots=2)
    b = make_project(tmp_path_factory, tmp_path / "b", shots=2)
    broken = tmp_path / "broken.yaml"
    broken.write_text("title: [unclosed\n")
    _fail_on(monkeypatch, "s1")  # every story's first shot fails …
    reports = _render([a, broken, b], keep_going=True)
    assert [r.status for r in reports] == ["failed", "failed", "failed"]
    assert [r.rendered for r in reports] == [["s2"], [], ["s2"]]
    assert reports[1].failures[0].shot_id is None and "problem" in reports[1].failures[0].message
    monkeypatch.undo()  # … until it is fixed: the next run renders only what is missing
    reports = _render([a, b], keep_going=True)
    assert [(r.status, r.rendered, r.skipped) for r in reports] == [("ok", ["s1"], ["s2"])] * 2
    assert all(r.reel is not None for r in reports)
    totals = batch_totals(reports, 1.5)
    shots = {"rendered": 2, "reused": 0, "current": 2, "failed": 0}
    assert totals == {"stories": 2, "ok": 2, "failed": 0, "not_run": 0, "shots": shots, "wall_seconds": 1.5}


def test_fail_fast_leaves_the_rest_of_the_batch_not_run(tmp_path_factory, tmp_path, monkeypatch) -> None:
    a, b, c = (
        make_project(tmp_path_factory, tmp_path / n, shots=s) for n, s in (("a", 1), ("b", 2), ("c", 2))
    )
    _fail_on(monkeypatch, "s2")
    reports = _render([a, b, c])
    assert [(r.status, r.rendered) for r in reports] == [("ok", ["s1"]), ("failed", ["s1"]), ("not_run", [])]
    assert reports[0].reel == tmp_path / "a" / "reel.mp4"  # a story finished before the failure is whole
    assert not (tmp_path / "c" / "renders" / "s1.mp4").exists()
    assert batch_totals(reports, 0)["not_run"] == 1


def test_render_and_the_reel_command_share_one_record(tmp_path_factory, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from storyreel.cli.app import app

    story = make_project(tmp_path_factory, tmp_path / "rec", shots=2, captions="both")
    root = story.parent
    record = root / ".storyreel" / "reel.json"
    (first,) = _render([story])
    assert first.reel == root / "reel.mp4" and probe_video(root / "reel.mp4").subtitle_streams == 1
    assert json.loads(record.read_text())["reels"][0]["options"]["captions"] == "both"

    manual = CliRunner().invoke(app, ["reel", str(story), "--captions", "none"])
    assert manual.exit_code == 0, manual.output
    assert probe_video(root / "reel.mp4").subtitle_streams == 0
    recorded = json.loads(record.read_text())
    assert recorded["reels"][0]["options"]["captions"] == "none" and recorded["review"] is True
    assert [seg["shot_id"] for seg in recorded["reels"][0]["segments"]] == ["s1", "s2"]

    (again,) = _render([story])  # the story says captions: both — the one-off choice is not kept
    assert again.rendered == [] and again.reel_note == "" and again.reel == root / "reel.mp4"
    assert probe_video(root / "reel.mp4").subtitle_streams == 1
    assert json.loads(record.read_text())["reels"][0]["options"]["captions"] == "both"

    same = CliRunner().invoke(app, ["reel", str(story)])  # the story's own options: render agrees
    assert same.exit_code == 0, same.output
    (last,) = _render([story])
    assert last.reel_note == "reel up to date"


def test_new_eval_results_refresh_the_review_page_without_reassembling(project: Path) -> None:
    root = project.parent
    _render([project])
    reel_before = snapshot(root, "reel.mp4")
    person = {"similarity": 0.8125, "frames_seen": 5}
    evaluation = {
        "backend": "dlib",
        "threshold": 0.4,
        "shots": {"s2": {"frames": 8, "characters": {"sam": person}}},
    }
    (root / "renders" / "eval.json").write_text(json.dumps(evaluation))
    (again,) = _render([project])
    assert again.reel_note == "reel up to date" and snapshot(root, "reel.mp4") == reel_before
    page = (root / "renders" / "index.html").read_text()
    assert "sam: good resemblance (0.81), missing in 3 of 8 frames" in page
    (last,) = _render([project])  # the page now shows these results: nothing to do
    assert last.reel_note == "reel up to date"
    assert json.loads((root / ".storyreel" / "reel.json").read_text())["review_eval"]


def test_progress_lines_name_their_story(tmp_path_factory, tmp_path: Path) -> None:
    from storyreel.reporting import Reporter

    stories = [make_project(tmp_path_factory, tmp_path / name, shots=1) for name in ("a", "b")]
    log = io.StringIO()
    terminal = Reporter(Console(file=log, force_terminal=True, width=300, color_system=None))
    reports = render_stories(stories, RenderOptions(keep_going=True), terminal)
    assert all(r.status == "ok" for r in reports)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", log.getvalue())  # cursor moves of the live display
    for story in stories:
        assert f"✓ {story}: s1" in text  # the finished-shot lines
        assert f"{story}: s1" in text and f"{story}: reel" in text  # the step and reel progress bars
    assert "shots" in text and "100%" in text


def test_a_damaged_clip_is_rendered_again_with_a_notice(project: Path) -> None:
    from storyreel.runner import DamagedClipWarning

    root = project.parent
    _render([project])
    good = (root / "renders" / "s2.mp4").read_bytes()
    reel_before = (root / "reel.mp4").stat().st_mtime_ns
    (root / "renders" / "s2.mp4").write_bytes(b"")  # `: > renders/s2.mp4`
    with pytest.warns(DamagedClipWarning, match=r"shot s2: the clip .*s2\.mp4 is damaged \(it is empty\)"):
        (report,) = _render([project])
    assert report.rendered == ["s2"] and report.skipped == ["s1", "s3"]
    assert (root / "renders" / "s2.mp4").read_bytes() == good  # the preview is deterministic
    meta = json.loads((root / "renders" / "s2.json").read_text())
    assert meta["clip"]["bytes"] == len(good) and len(meta["clip"]["sha256"]) == 64
    assert report.reel_note == "reel up to date" and (root / "reel.mp4").stat().st_mtime_ns == reel_before
    (root / "renders" / "s3.mp4").write_bytes(good)  # a valid video, but not the clip its record describes
    with pytest.warns(DamagedClipWarning, match="s3.*content differs|s3.*it has"):
        (report,) = _render([project])
    assert report.rendered == ["s3"] and report.reel_note == "reel up to date"  # same bytes as before
    assert json.loads((root / "renders" / "s3.json").read_text())["clip"]["sha256"] != meta["clip"]["sha256"]


def test_options_are_checked_up_front() -> None:
    from storyreel.errors import StoryreelError

    with pytest.raises(StoryreelError, match="unknown memory 'bogus'") as err:
        RenderOptions(memory="bogus")
    assert "model_offload" in (err.value.hint or "")
    with pytest.raises(StoryreelError, match="unknown engine 'fast'"):
        RenderOptions(engine="fast")
