"""The two accelerate launch mistakes are stopped with a message saying what to type instead."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ingredients_model.errors import IngredientsError
from ingredients_model.training.launch import check_launch

LAUNCH_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "MASTER_ADDR",
               "MASTER_PORT", "ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_CPU")  # fmt: skip


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_check_launch_rules(clean_env: pytest.MonkeyPatch) -> None:
    check_launch(1)  # plain `python -m ingredients_model.training ...`
    clean_env.setenv("ACCELERATE_MIXED_PRECISION", "no")
    check_launch(1)  # `accelerate launch` with one process
    clean_env.setenv("MASTER_ADDR", "127.0.0.1")  # what --num_processes 2 without --multi_gpu leaves behind
    with pytest.raises(IngredientsError, match="started one") as err:
        check_launch(1)
    assert "--multi_gpu" in err.value.hint and "ACCELERATE_USE_CPU=1" in err.value.hint
    clean_env.setenv("WORLD_SIZE", "2")
    check_launch(2)  # a real 2-process group
    with pytest.raises(IngredientsError, match="2 processes were started") as err:
        check_launch(1)  # each process alone: no GPU and no ACCELERATE_USE_CPU
    assert "ACCELERATE_USE_CPU=1" in err.value.hint


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(flags: list[str], config: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [str(accelerate), "launch", *flags, "--main_process_port", str(_free_port()), "--num_machines",
               "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ingredients_model.training",
               "stage2", "--config", str(config)]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_accelerate_launch_mistakes_on_cpu(tmp_path: Path) -> None:
    import torch

    config = tmp_path / "stage2.yaml"
    config.write_text("model_dir: model\ndata_dir: data\noutput_dir: out\n")
    one = _launch(["--num_processes", "2"], config)
    assert one.returncode != 0 and "started one" in one.stderr and "--multi_gpu" in one.stderr
    if torch.cuda.is_available():
        pytest.skip("the --multi_gpu mistake needs a machine without GPUs")
    alone = _launch(["--multi_gpu", "--num_processes", "2"], config)
    output = alone.stdout + alone.stderr
    assert alone.returncode != 0 and "2 processes were started" in output and "ACCELERATE_USE_CPU=1" in output
