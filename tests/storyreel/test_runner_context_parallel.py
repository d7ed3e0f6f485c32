"""`storyreel render --gpus 2 --parallel shot` on the CPU: two real `accelerate launch` processes with gloo
render every shot together (context parallelism), and the clips match a one-process render.

One stand-in makes diffusers' GPU-only piece run on a CPU, in the launched processes only (a
``sitecustomize`` module on their ``PYTHONPATH``, written by the test): ``torch.accelerator.device_count``
returns 1, because diffusers' ``enable_parallelism`` picks each process's device as ``rank % device_count()``,
a division by zero without an accelerator. Everything else is the product's own path: the command builds the
``accelerate launch``, each process loads the tiny model on the CPU and calls ``enable_context_parallel``,
process 0 fills the caches and writes the clips. Not covered here: NCCL and real GPUs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from storyreel.ffmpeg_tools import ffmpeg_exe
from storyreel.runner import RenderOptions, render_stories
from tests.helpers.projects import make_project, storyreel

pytestmark = pytest.mark.slow

STAND_IN = """\
import os

if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # only in the processes accelerate launches
    import torch

    if torch.accelerator.device_count() == 0:
        torch.accelerator.device_count = lambda: 1
"""


def _frames(path: Path) -> np.ndarray:
    raw = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 64, 96, 3).astype(float)


def test_two_processes_render_each_shot_together(
    tiny_model_dir: Path, tmp_path_factory, tmp_path: Path
) -> None:
    story = {"shots": 2, "engine": "ingredients", "steps": 2, "seconds": 1.0}
    alone = make_project(tmp_path_factory, tmp_path / "alone", **story)
    options = RenderOptions(model=tiny_model_dir, reel=False)
    render_stories([alone], options, Console(file=open("/dev/null", "w")))  # noqa: SIM115

    together = make_project(tmp_path_factory, tmp_path / "together", **story)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(STAND_IN)
    result = storyreel(
        "render", str(together), "--model", str(tiny_model_dir), "--gpus", "2", "--parallel", "shot",
        env={"PYTHONPATH": str(site)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--parallel shot" in result.stderr and "2 rendered" in result.stdout  # notices: stderr
    for shot in ("s1", "s2"):  # each shot said done once, by process 0
        assert result.stderr.count(f"together/story.yaml: {shot} (") == 1, result.stderr
    assert "[process 1] ✓" not in result.stderr
    for shot in ("s1", "s2"):
        record = json.loads((together.parent / "renders" / f"{shot}.json").read_text())
        assert record["process_index"] == 0 and record["versions"]["context_parallel"] == "2"
        assert record["versions"]["memory"] == "none"
        expected = json.loads((alone.parent / "renders" / f"{shot}.json").read_text())
        assert record["key"] == expected["key"]  # the same job: how it is split is not in the key
        ours = _frames(together.parent / "renders" / f"{shot}.mp4")
        theirs = _frames(alone.parent / "renders" / f"{shot}.mp4")
        assert ours.shape == theirs.shape == (9, 64, 96, 3)
        # equal up to float rounding (latents to ~5e-6) that the codec can spread over a block of
        # noise-like pixels: measured 0.005 and 0.5 levels; another shot's clip differs by about 27
        assert np.abs(ours - theirs).mean() < 2, np.abs(ours - theirs).mean()
    assert not list((together.parent / "renders").glob("*.partial"))
    assert (together.parent / "reel.mp4").is_file()  # process 0 builds the reel
