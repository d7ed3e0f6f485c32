"""The README's Campaigns example runs as written and makes what the README says it makes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storyreel.ffmpeg_tools import probe_video

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def campaign_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Campaigns\n", 1)[1]
    return section.split("```bash\n", 1)[1].split("\n```\n", 1)[0]


def test_the_campaign_example_runs_as_written(tmp_path: Path) -> None:
    script = campaign_example()
    assert script.startswith("storyreel init shop --example")
    bin_dir = str(Path(sys.executable).parent)  # where the `storyreel` console script is installed
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "COLUMNS": "200"}
    env.pop("STORYREEL_MODEL", None)
    run = subprocess.run(
        ["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = " ".join((run.stdout + run.stderr).split())  # results on stdout, warnings and progress on stderr
    shop = tmp_path / "shop"
    assert "valid with 1 warning" in out and "9x16" in out
    assert "ad.yaml (product=sneakers): ok — 2 rendered" in out
    assert "ad.yaml (product=boots): ok — 1 rendered, 0 already current, 1 reused" in out
    assert "shots: 3 rendered, 1 reused, 0 current, 0 failed" in out
    assert "shot 'together' in 9x16: 2 people do not fit side by side" in out
    assert len(list((shop / "renders" / "clips").glob("*.mp4"))) == 3
    sizes = {"16x9": (854, 480), "9x16": (480, 854), "1x1": (480, 480)}
    for product in ("sneakers", "boots"):
        for label, size in sizes.items():
            info = probe_video(shop / f"ad-{product}-{label}.mp4")
            assert (info.width, info.height) == size
        assert (shop / "renders" / f"ad-{product}" / "index.html").is_file()
    page = (shop / "campaign.html").read_text(encoding="utf-8")
    assert "sneakers for launch day" in page and "boots for launch day" in page
