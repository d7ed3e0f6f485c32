"""`storyreel render` and `storyreel plan` from the command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from storyreel.cli.options import expand_stories
from storyreel.cli.render_commands import accelerate_command, render_args, split_ids
from storyreel.errors import StoryreelError
from storyreel.ffmpeg_tools import probe_video
from tests.helpers.projects import make_library, make_project, storyreel


@pytest.mark.slow
def test_init_example_then_render_makes_a_reel_quickly(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert storyreel("init", str(demo), "--example").returncode == 0
    started = time.perf_counter()
    result = storyreel("render", str(demo / "story.yaml"))
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert "engine: preview" in result.stderr and "no model folder" in result.stderr
    assert "4 rendered" in result.stdout and "reel.mp4" in result.stdout and "index.html" in result.stdout
    reel = probe_video(demo / "reel.mp4")
    assert (reel.width, reel.height, reel.fps) == (720, 480, 24) and reel.duration > 15
    assert seconds < 60, f"{seconds:.0f} s"


@pytest.mark.slow
def test_plan_shows_todo_done_and_stale(tmp_path_factory, tmp_path: Path) -> None:
    project = make_project(tmp_path_factory, tmp_path / "demo", shots=2)
    before = storyreel("plan", str(project))
    assert before.returncode == 0, before.stderr
    assert "Test Reel: preview, 160x96 at 12 fps" in before.stdout
    assert "0 done, 0 stored, 0 stale, 2 todo" in before.stdout
    assert storyreel("render", str(project), "--no-reel").returncode == 0
    project.write_text(project.read_text().replace("Caption 2", "Another caption"))
    after = storyreel("plan", str(project.parent))
    assert "1 done, 0 stored, 1 stale, 0 todo" in after.stdout
    assert "nora, sam" in after.stdout


def test_render_a_glob_of_stories(tmp_path_factory, tmp_path: Path) -> None:
    for name in ("a", "b"):
        make_project(tmp_path_factory, tmp_path / "stories" / name, shots=1)
    result = storyreel("render", str(tmp_path / "stories" / "*" / "story.yaml"), "--no-reel")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("1 rendered") == 2 and result.stderr.count("engine: preview") == 1
    missing = storyreel("render", str(tmp_path / "nothing" / "*.yaml"))
    assert missing.returncode == 1 and "no story matches" in missing.stderr


def test_user_errors_have_hints_and_no_traceback(tmp_path_factory, tmp_path: Path) -> None:
    project = make_project(tmp_path_factory, tmp_path / "demo", shots=1)
    result = storyreel("render", str(project), "--engine", "ingredients", env={"STORYREEL_MODEL": ""})
    assert result.returncode == 1 and "needs a model folder" in result.stderr
    assert "storyreel models tiny DIR" in result.stderr and "Traceback" not in result.stderr
    unknown = storyreel("render", str(project), "--only", "s1,nope")
    assert unknown.returncode == 1 and "'nope'" in unknown.stderr


def test_argument_helpers(tmp_path: Path, monkeypatch) -> None:
    assert split_ids(["a,b", " c ", ""]) == ["a", "b", "c"] and split_ids(None) is None
    assert expand_stories(None) == [Path("story.yaml")]
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "story.yaml").write_text("")
    assert expand_stories([str(tmp_path / "*" / "story.yaml")]) == [tmp_path / "x" / "story.yaml"]
    with pytest.raises(StoryreelError):
        expand_stories([str(tmp_path / "none-*")])


def test_gpus_spawns_accelerate_launch() -> None:
    command = accelerate_command(4, ["a/story.yaml", "--force"], gpus_visible=8)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "4" and "--multi_gpu" in command
    assert command[-4:] == ["storyreel", "render", "a/story.yaml", "--force"]
    assert "--gpus" not in command
    with pytest.raises(StoryreelError, match="only 2 CUDA GPU"):
        accelerate_command(4, [], gpus_visible=2)


def test_each_launched_process_gets_the_same_options(tmp_path: Path) -> None:
    from storyreel.cli.options import shot_overrides
    from storyreel.runner import RenderOptions

    cache = {"kind": "taylorseer", "cache_interval": 4, "taylor_factors_dtype": "float32"}
    options = RenderOptions(
        engine="preview", model=Path("m"), only=["s1", "s2"], cfg_routing="per_branch", cache=cache,
        parallel="shot", reel=False, cast_library=Path("cast-lib"),
    )  # fmt: skip
    args = render_args(["a/story.yaml"], options)
    passed = shot_overrides(args[args.index("--cfg-routing") + 1], args[args.index("--cache") + 1], None)
    assert passed == options.overrides and args[args.index("--parallel") + 1] == "shot"
    threshold = render_args([], RenderOptions(cache_threshold=0.05))
    assert threshold[threshold.index("--cache-threshold") + 1] == "0.05"
    assert args[:3] == ["a/story.yaml", "--engine", "preview"]
    assert args[args.index("--model") + 1] == str(Path("m").absolute())
    assert args[args.index("--cast-library") + 1] == str(Path("cast-lib").absolute())
    assert [args[i + 1] for i, a in enumerate(args) if a == "--only"] == ["s1", "s2"]
    assert "--no-reel" in args and "--force" not in args
    assert args[args.index("--wait") + 1] == "10.0"
    assert render_args([], RenderOptions()) == ["--memory", "auto", "--wait", "10.0", "--fail-fast"]
    assert render_args([], RenderOptions(keep_going=True))[-1] == "--keep-going"


def test_retired_worker_mode_and_ray_option_errors(tmp_path_factory, tmp_path: Path) -> None:
    project = make_project(tmp_path_factory, tmp_path / "p", shots=1)
    for retired in (["--worker"], ["--lease", "60"]):
        result = storyreel("render", str(project), *retired)
        assert result.returncode == 1 and "replaced by Ray" in result.stderr and "--ray" in result.stderr
    assert "--worker" not in storyreel("render", "--help").stdout
    both = storyreel("render", str(project), "--ray", "--gpus", "2")
    assert both.returncode == 1 and "cannot be combined" in both.stderr
    alone = storyreel("render", str(project), "--ray-address", "head:6379")
    assert alone.returncode == 1 and "need --ray" in alone.stderr
    assert not (project.parent / "renders").exists()


def test_a_batch_keeps_going_reports_each_story_and_a_total(tmp_path_factory, tmp_path: Path) -> None:
    a = make_project(tmp_path_factory, tmp_path / "a", shots=1)
    b = make_project(tmp_path_factory, tmp_path / "b", shots=3)
    broken = tmp_path / "broken" / "story.yaml"
    broken.parent.mkdir()
    broken.write_text("title: [unclosed\n")
    result = storyreel("render", str(a), str(broken), str(b), "--only", "s3", "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert document["schema"] == "storyreel.render/1" and document["ok"] is False
    stories = {Path(s["story"]).parent.name: s for s in document["stories"]}
    assert [stories[name]["status"] for name in ("a", "broken", "b")] == ["failed", "failed", "ok"]
    assert "no shot with id 's3'" in stories["a"]["failures"][0]["message"]
    assert stories["b"]["shots"] == {"rendered": ["s3"], "reused": [], "current": [], "failed": []}
    total = document["total"]
    assert (total["stories"], total["ok"], total["failed"]) == (3, 1, 2) and total["wall_seconds"] > 0
    assert total["shots"] == {"rendered": 1, "reused": 0, "current": 0, "failed": 0}
    assert "a/story.yaml: no shot with id 's3'" in result.stderr  # errors name the story
    assert "total: 3 stories (1 ok, 2 failed)" in result.stderr  # human text: stderr under --json

    fail_fast = storyreel("render", str(a), str(broken), str(b), "--fail-fast", "--no-reel")
    assert fail_fast.returncode == 1 and "Traceback" not in fail_fast.stderr
    assert "total: 3 stories (1 failed, 2 not run); shots: 0 rendered" in fail_fast.stdout
    assert not (tmp_path / "a" / "renders" / "s1.mp4").exists()  # nothing started after the failure


def test_plan_several_stories_as_json(tmp_path_factory, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from storyreel.cli import app

    a = make_project(tmp_path_factory, tmp_path / "a", shots=1)
    b = make_project(tmp_path_factory, tmp_path / "b", shots=2)
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "*" / "story.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema"] == "storyreel.plan/1" and document["ok"] is True
    assert [s["story"] for s in document["stories"]] == [str(a), str(b)]
    jobs = document["stories"][1]["jobs"]
    assert [(j["shot"], j["status"], j["width"], len(j["key"])) for j in jobs] == [
        ("s1", "todo", 160, 64),
        ("s2", "todo", 160, 64),
    ]
    assert document["stories"][1]["counts"] == {"done": 0, "stored": 0, "stale": 0, "damaged": 0, "todo": 2}
    missing = CliRunner().invoke(app, ["plan", str(a), str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "0 done, 0 stored, 0 stale, 1 todo" in missing.stdout
    assert "does not exist" in missing.stderr and "2 stories: 1 ok, 1 failed" in missing.stdout


def test_json_errors_are_documents_too(tmp_path: Path) -> None:
    result = storyreel("render", str(tmp_path / "nothing" / "*.yaml"), "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["schema"] == "storyreel.error/1" and document["command"] == "render"
    assert document["kind"] == "user" and "no story matches" in document["error"]["message"]
    assert document["exit_code"] == 1 and "no story matches" in result.stderr


def test_stories_with_library_members_from_the_command_line(tmp_path_factory, tmp_path: Path) -> None:
    library = make_library(tmp_path_factory, tmp_path / "library")
    (library / "nora" / "consent.yaml").write_text(
        "given_by: Nora\nvalid_until: 2020-01-31\nallowed_uses: social\n"
    )
    project = make_project(tmp_path_factory, tmp_path / "p", shots=2, from_library=("nora",))
    no_library = {"STORYREEL_CAST": ""}
    missing = storyreel("render", str(project), env=no_library)
    assert missing.returncode == 1 and "unknown cast member 'nora'" in missing.stderr
    assert "--cast-library DIR" in missing.stderr

    checked = storyreel("validate", str(project), "--cast-library", str(library), env=no_library)
    assert checked.returncode == 0, checked.stderr
    assert f"cast library {library} (from --cast-library)" in checked.stdout
    assert "library: nora (1 photo)" in checked.stdout and "expired on 2020-01-31" in checked.stderr

    rendered = storyreel("render", str(project), "--no-reel", env={"STORYREEL_CAST": str(library)})
    assert rendered.returncode == 0, rendered.stderr
    assert "warning:" in rendered.stderr and "the consent of 'nora' expired" in rendered.stderr
    assert "2 rendered" in rendered.stdout
    planned = storyreel("plan", str(project), "--cast-library", str(library), "--json", env=no_library)
    assert planned.returncode == 0 and json.loads(planned.stdout)["stories"][0]["counts"]["done"] == 2
    assert "expired on 2020-01-31" in planned.stderr
    checked = storyreel("validate", str(project), "--cast-library", str(library), "--json", env=no_library)
    (story,) = json.loads(checked.stdout)["stories"]
    assert story["cast_library"] == str(library) and story["use"] == []
    assert {c["name"]: c["library"] for c in story["cast"]} == {"sam": None, "eileen": None, "nora": "nora"}
    assert any("expired" in w["message"] for w in story["warnings"])


@pytest.mark.slow
def test_a_damaged_clip_shows_in_plan_and_is_rendered_again(tmp_path_factory, tmp_path: Path) -> None:
    project = make_project(tmp_path_factory, tmp_path / "demo", shots=2)
    assert storyreel("render", str(project)).returncode == 0
    (project.parent / "renders" / "s1.mp4").write_bytes(b"")  # `: > renders/s1.mp4`
    planned = storyreel("plan", str(project))
    assert planned.returncode == 0 and "1 done, 0 stored, 0 stale, 1 damaged, 0 todo" in planned.stdout
    assert "damaged" in planned.stdout.split("s1", 1)[1].splitlines()[0]
    result = storyreel("render", str(project))
    assert result.returncode == 0, result.stderr
    assert "1 rendered, 1 already current" in result.stdout
    assert "warning: shot s1: the clip" in result.stderr and "is damaged (it is empty)" in result.stderr
    # warnings are one console line each: no Python warning format, no source lines
    assert "DamagedClipWarning" not in result.stderr and "warnings.warn" not in result.stderr
    assert ".py:" not in result.stderr
    assert "0 damaged" not in storyreel("plan", str(project)).stdout


@pytest.mark.slow
def test_reel_refuses_stale_clips_unless_forced(tmp_path_factory, tmp_path: Path) -> None:
    project = make_project(tmp_path_factory, tmp_path / "demo", shots=2)
    assert storyreel("render", str(project)).returncode == 0
    project.write_text(project.read_text().replace("Caption 2", "Another caption"))
    refused = storyreel("reel", str(project))
    assert refused.returncode == 1
    assert "1 of 2 clips do not match story.yaml for the preview engine: s2 (stale)" in refused.stderr
    assert "storyreel render" in refused.stderr and "--force" in refused.stderr
    forced = storyreel("reel", str(project), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "warning: 1 of 2 clips do not match" in forced.stderr and "reel:" in forced.stdout


def test_enumerated_options_are_checked_before_any_work(tmp_path_factory, tmp_path: Path) -> None:
    project = make_project(tmp_path_factory, tmp_path / "demo", shots=1)
    for args in (
        ("render", str(project), "--memory", "bogus"),
        ("render", str(project), "--engine", "fast"),
        ("plan", str(project), "--engine", "fast"),
        ("reel", str(project), "--captions", "loud"),
        ("reel", str(project), "--retime", "smooth"),
        ("reel", str(project), "--format", "avi"),
        ("eval", str(project), "--backend", "facenet"),
    ):
        result = storyreel(*args)
        assert result.returncode == 2 and "Invalid value for" in result.stderr, args
        assert args[-1] in result.stderr
    assert not (project.parent / "renders").exists()


def test_cache_routing_and_parallel_options_are_checked_before_anything_runs(
    tmp_path_factory, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from storyreel.cli import app

    project = make_project(tmp_path_factory, tmp_path / "p", shots=2)
    cases = [
        (["--cfg-routing", "sideways"], "unknown --cfg-routing 'sideways'", "released, per_branch"),
        (["--cache", "{kind: magic}"], "Unknown cache kind 'magic'", "first_block, mag, taylorseer"),
        (["--cache", "taylorseer", "--cache-threshold", "0.1"], "not both", "short for"),
        (["--parallel", "frames"], "unknown --parallel 'frames'", "shots, shot"),
        (["--parallel", "shot"], "give their number with --gpus N", "--gpus 2 --parallel shot"),
        (
            ["--gpus", "2", "--parallel", "shot", "--cache-threshold", "0.05"],
            "first-block cache",
            "taylorseer",
        ),
        (
            ["--gpus", "2", "--parallel", "shot", "--memory", "group_offload"],
            "whole model on each GPU",
            "auto",
        ),
    ]
    for args, message, hint in cases:
        result = CliRunner().invoke(app, ["render", str(project), *args])
        error = result.exception
        assert isinstance(error, StoryreelError), (args, result.output, error)
        assert message in error.message and hint in (error.hint or ""), (args, error.message, error.hint)
    project.write_text(project.read_text().replace("Caption 2", "Caption 2\n    cache: first_block"))
    result = CliRunner().invoke(app, ["render", str(project), "--gpus", "2", "--parallel", "shot"])
    assert isinstance(result.exception, StoryreelError) and "(shots s2)" in result.exception.message
    assert not (project.parent / "renders").exists()
    plan = CliRunner().invoke(app, ["plan", str(project), "--cfg-routing", "per_branch", "--cache", "none"])
    assert plan.exit_code == 0, plan.output
