"""How the process was launched: the accelerate process group, checked for two silent launch mistakes.

1. ``accelerate launch --num_processes N`` (N > 1) without ``--multi_gpu``: accelerate's simple launcher
   starts one process (it only sets ``MASTER_ADDR``/``MASTER_PORT``), which then trains alone.
2. ``accelerate launch --multi_gpu`` on a machine without GPUs and without ``ACCELERATE_USE_CPU=1``:
   torchrun starts N processes, but each one finds no GPU and runs alone: N independent runs, one folder.

Both are stopped with a message saying what to type instead.
"""

from __future__ import annotations

import os

from ingredients_model.errors import IngredientsError

CPU_LAUNCH = (
    "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N -m ingredients_model.training ..."
)
GPU_LAUNCH = "accelerate launch --multi_gpu --num_processes N -m ingredients_model.training ..."
_WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_world_size() -> int:
    """The number of processes the launcher started (1 when none says otherwise)."""
    for name in _WORLD_SIZE_VARS:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 1


def check_launch(num_processes: int) -> None:
    """IngredientsError when the launch went wrong (see the module docstring); ``num_processes`` is the size
    of the process group accelerate built."""
    world = launched_world_size()
    if world > 1 and num_processes == 1:
        raise IngredientsError(
            f"{world} processes were started, but accelerate found no GPU and runs each of them alone: they "
            "would train the same run side by side and overwrite each other's files",
            f"on a CPU machine set ACCELERATE_USE_CPU=1: `{CPU_LAUNCH}`; on a GPU machine check that the "
            "GPUs are visible (nvidia-smi, CUDA_VISIBLE_DEVICES)",
        )
    by_accelerate = "ACCELERATE_MIXED_PRECISION" in os.environ  # set by `accelerate launch`, every launcher
    if by_accelerate and world == 1 and num_processes == 1 and "MASTER_ADDR" in os.environ:
        raise IngredientsError(
            "accelerate launch was asked for several processes but started one (--num_processes N without "
            "--multi_gpu runs a single process)",
            f"add --multi_gpu: `{GPU_LAUNCH}`, or on a CPU machine `{CPU_LAUNCH}`; for one process use "
            "--num_processes 1",
        )


def process_state():
    """accelerate's ``PartialState`` as ``Accelerator`` builds it (``ACCELERATE_USE_CPU`` honoured), checked
    with :func:`check_launch`."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    check_launch(state.num_processes)
    return state
