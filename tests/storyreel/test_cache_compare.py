"""`storyreel eval --compare-cache`: a shot rendered with and without its step cache, on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from storyreel.cache_compare import compare_cache, pixel_difference
from storyreel.cli import app
from storyreel.errors import StoryreelError
from storyreel.plan import Overrides
from storyreel.project import Project
from storyreel.story import load_story
from tests.helpers.projects import make_project


def test_pixel_difference() -> None:
    a = np.zeros((2, 4, 4, 3), np.uint8)
    assert pixel_difference(a, a) == (None, 0.0)
    b = a.copy()
    b[0, 0, 0, 0] = 255  # one value off by 255: MSE 255²/96
    psnr, difference = pixel_difference(a, b)
    assert psnr == pytest.approx(10 * np.log10(96)) and difference == pytest.approx(255 / 96)
    with pytest.raises(StoryreelError, match="differ in shape"):
        pixel_difference(a, b[:1])


@pytest.mark.slow
def test_cached_and_uncached_renders_are_compared(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    path = make_project(tmp_path_factory, tmp_path / "p", shots=3, engine="ingredients", steps=3)
    text = path.read_text()
    text = text.replace(
        "caption: Caption 1", "caption: Caption 1\n    cache: {kind: first_block, threshold: 0}"
    )
    text = text.replace(
        "caption: Caption 2", "caption: Caption 2\n    cache: {kind: first_block, threshold: 1.0e+9}"
    )
    path.write_text(text)
    story = load_story(path)
    project = Project.from_story(story)
    report = compare_cache(story, project, model_dir=tiny_model_dir, frames=3)
    assert set(report["shots"]) == {"s1", "s2"}  # s3 has no cache
    exact, skipping = report["shots"]["s1"], report["shots"]["s2"]
    assert exact["cache"] == {"kind": "first_block", "threshold": 0}
    assert exact["psnr_db"] is None and exact["mean_abs_diff"] == 0  # threshold 0: the uncached result
    assert skipping["psnr_db"] > 0 and skipping["mean_abs_diff"] > 0  # every step after the first skipped
    for variant in ("cached", "uncached"):
        entry = skipping[variant]
        assert (project.root / entry["clip"]).is_file()
        assert entry["denoise_seconds"] > 0 and entry["render_seconds"] >= entry["denoise_seconds"]
        assert set(entry["characters"]) == {"eileen"} and "face_sim" in entry  # s2: eileen
    assert skipping["speedup"] > 0
    assert not project.clip_path("s1").exists()  # the shot's own clip is not rendered

    with pytest.raises(StoryreelError, match="no step cache for shot"):
        compare_cache(story, project, model_dir=tiny_model_dir, only=["s3"])
    everywhere = Overrides(cache="none")
    with pytest.raises(StoryreelError, match="no shot of this story has a step cache"):
        compare_cache(story, project, model_dir=tiny_model_dir, overrides=everywhere)

    result = CliRunner().invoke(
        app,
        ["eval", str(path), "--compare-cache", "--model", str(tiny_model_dir), "--only", "s3",
         "--frames", "2", "--cache", "{kind: taylorseer, cache_interval: 2, disable_cache_before_step: 1}"],
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Step cache against" in result.output and "taylorseer" in result.output
    written = json.loads(project.cache_compare_path.read_text())
    assert set(written["shots"]) == {"s3"} and written["shots"]["s3"]["mean_abs_diff"] > 0


def test_cache_options_need_compare_cache(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    path = make_project(tmp_path_factory, tmp_path / "p", shots=1)
    result = CliRunner().invoke(app, ["eval", str(path), "--cache", "taylorseer"])
    assert isinstance(result.exception, StoryreelError)
    assert "belong to --compare-cache" in result.exception.message
