"""Stories that mix engines: each shot on its own engine (ingredients and wan-vace with tiny random
models), clips of different sizes and frame rates, one reel, one review page."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from storyreel.ffmpeg_tools import probe_video
from storyreel.runner import RenderOptions, render_stories
from tests.helpers.projects import make_project, snapshot


def _render(paths: list[Path], **options) -> list:
    return render_stories(paths, RenderOptions(**options), Console(file=io.StringIO(), width=120))


def _mixed(path: Path) -> Path:
    """Shot 2 on wan-vace, shot 3 on wan-vace without people (the Ingredients model needs someone)."""
    text = path.read_text()
    text = text.replace("    caption: Caption 2\n", "    caption: Caption 2\n    engine: wan-vace\n")
    text = text.replace(
        '"{sam} and {nora} lean toward the television and cheer"',
        '"a rocket waits on the launch pad at dawn"',
    )
    text = text.replace("    caption: Caption 3\n", "    caption: Caption 3\n    engine: wan-vace\n")
    path.write_text(text)
    return path


@pytest.mark.slow
def test_a_story_mixing_ingredients_and_wan_vace_renders(
    tiny_model_dir: Path, tiny_wan_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    path = _mixed(make_project(tmp_path_factory, tmp_path / "mix", shots=3, engine="ingredients", steps=2))
    root = path.parent
    (report,) = _render([path], model=tiny_model_dir, wan_model=tiny_wan_dir, memory="none")
    assert report.rendered == ["s1", "s2", "s3"] and report.engine == "ingredients, wan-vace"
    clips = {shot: probe_video(root / "renders" / f"{shot}.mp4") for shot in ("s1", "s2", "s3")}
    assert (clips["s1"].width, clips["s1"].height, clips["s1"].fps, clips["s1"].frames) == (96, 64, 8, 9)
    # 1 s at 16 fps = 16 frames → 17 (4k+1): Wan's own size and rate
    assert (clips["s2"].width, clips["s2"].height, clips["s2"].fps, clips["s2"].frames) == (112, 64, 16, 17)
    records = {shot: json.loads((root / "renders" / f"{shot}.json").read_text()) for shot in clips}
    assert [records[shot]["engine"] for shot in clips] == ["ingredients", "wan-vace", "wan-vace"]
    assert records["s1"]["job"]["guidance"] == 6.0 and records["s2"]["job"]["guidance"] == 5.0
    assert records["s1"]["job"]["router_mode"] == "soft" and records["s2"]["job"]["router_mode"] is None
    assert records["s2"]["details"]["references"] == 1 and records["s3"]["details"]["references"] == 0
    reel = probe_video(root / "reel.mp4")
    assert (reel.width, reel.height, reel.fps) == (160, 96, 12)
    # each clip keeps its length, retimed to the reel's frame rate (8 and 16 fps → 12 fps)
    assert reel.frames == sum(round(clip.frames * 12 / clip.fps) for clip in clips.values())
    page = (root / "renders" / "index.html").read_text()
    badge = '<span class="engine" title="the engine that made this shot">{}</span>'
    assert page.count(badge.format("wan-vace")) == 2 and page.count(badge.format("ingredients")) == 1
    before = snapshot(root / "renders", "s*")
    (again,) = _render([path], model=tiny_model_dir, wan_model=tiny_wan_dir, memory="none")
    assert again.rendered == [] and snapshot(root / "renders", "s*") == before


@pytest.mark.slow
def test_a_vertical_reel_gets_vertical_wan_clips(
    tiny_wan_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    path = make_project(tmp_path_factory, tmp_path / "v", shots=1, engine="wan-vace", size="96x160", steps=2)
    (report,) = _render([path], wan_model=tiny_wan_dir, memory="none")
    clip = probe_video(path.parent / "renders" / "s1.mp4")
    assert report.engine == "wan-vace" and (clip.width, clip.height) == (64, 112)
    reel = probe_video(path.parent / "reel.mp4")
    assert (reel.width, reel.height) == (96, 160)
