"""`storyreel render` and `storyreel plan` from the command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from storyreel.cli.render_commands import accelerate_command, expand_stories, render_args, split_ids
from storyreel.errors import StoryreelError
from storyreel.ffmpeg_tools import probe_video
from tests.helpers.projects import make_project, storyreel


@pytest.mark.slow
def test_init_example_then_render_makes_a_reel_quickly(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert storyreel("init", str(demo), "--example").returncode == 0
    started = time.perf_counter()
    result = storyreel("render", str(demo / "story.yaml"))
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert "engine: preview" in result.stdout and "no model folder" in result.stdout
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
    assert "0 done, 0 stale, 2 todo" in before.stdout
    assert storyreel("render", str(project), "--no-reel").returncode == 0
    project.write_text(project.read_text().replace("Caption 2", "Another caption"))
    after = storyreel("plan", str(project.parent))
    assert "1 done, 1 stale, 0 todo" in after.stdout
    assert "nora, sam" in after.stdout


def test_render_a_glob_of_stories(tmp_path_factory, tmp_path: Path) -> None:
    for name in ("a", "b"):
        make_project(tmp_path_factory, tmp_path / "stories" / name, shots=1)
    result = storyreel("render", str(tmp_path / "stories" / "*" / "story.yaml"), "--no-reel")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("1 rendered") == 2 and result.stdout.count("engine: preview") == 1
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
    from storyreel.runner import RenderOptions

    options = RenderOptions(
        engine="preview", model=Path("m"), only=["s1", "s2"], cache_threshold=0.05, reel=False
    )
    args = render_args(["a/story.yaml"], options)
    assert args[:3] == ["a/story.yaml", "--engine", "preview"]
    assert args[args.index("--model") + 1] == str(Path("m").absolute())
    assert [args[i + 1] for i, a in enumerate(args) if a == "--only"] == ["s1", "s2"]
    assert "--no-reel" in args and "--force" not in args
    assert args[args.index("--wait") + 1] == "10.0"
    assert render_args([], RenderOptions()) == ["--memory", "auto", "--wait", "10.0"]


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
