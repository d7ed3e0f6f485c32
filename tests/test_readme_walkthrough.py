"""The README's training walk-through runs exactly as written: its ```bash blocks are read from README.md
(so the two cannot drift apart) and run in an empty folder, on the tiny model, on the CPU."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "### Walk-through: a complete run on a CPU"


def walkthrough_commands(readme: Path = README) -> str:
    """The bash blocks of the walk-through section, in order, as one script."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start)
    blocks = re.findall(r"```bash\n(.*?)```", text[start : end if end != -1 else None], flags=re.S)
    assert blocks, f"no ```bash blocks under {SECTION!r}"
    return "\n".join(blocks)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_walkthrough_has_every_step() -> None:
    script = walkthrough_commands()
    for step in ("storyreel render demo/story.yaml", "training prepare", "training stage1", "training stage2",
                 "training export", "--model models/trained"):  # fmt: skip
        assert step in script
    assert (
        script.count("accelerate launch") == 4
        and "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu" in script
    )
    assert "model_dir: runs/stage1/exported" in script  # stage 2 starts from the stage-1 export


@pytest.mark.slow
def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "PYTHONPATH"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's tools
    # accelerate's default config, only so that the 2-process run gets a free port (other test runs may use
    # torchrun's default 29500 at the same time); the commands themselves are the README's
    env["HF_HOME"] = str(tmp_path / "hf")
    (tmp_path / "hf" / "accelerate").mkdir(parents=True)
    (tmp_path / "hf" / "accelerate" / "default_config.yaml").write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nmixed_precision: 'no'\nnum_machines: 1\n"
        f"num_processes: 1\nmain_process_port: {_free_port()}\nuse_cpu: false\ndynamo_config: {{}}\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough_commands()],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - started
    print(f"\nREADME walk-through: {seconds:.0f} s")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    rows = (work / "data" / "prepared" / "index.jsonl").read_text().splitlines()
    assert len(rows) == 2  # both two-person shots became training clips
    stage1 = work / "runs" / "stage1"
    assert json.loads((stage1 / "logs" / "train.jsonl").read_text().splitlines()[-1])["step"] == 4
    assert (stage1 / "exported" / "face_encoder").is_dir()
    trained = json.loads((work / "models" / "trained" / "training.json").read_text())
    assert trained["checkpoint"].endswith("checkpoint-4") and trained["base_model"].endswith(
        "runs/stage1/exported"
    )
    meta = json.loads((work / "demo" / "renders" / "breakfast.json").read_text())
    assert meta["engine"] == "ingredients" and (work / "demo" / "reel.mp4").is_file()
    assert "stage2: 100%" in done.stderr  # the progress bar
