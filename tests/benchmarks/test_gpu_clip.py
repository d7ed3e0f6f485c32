"""benchmarks/gpu_clip.py: the GPU benchmark's code, run at the tiny size on the CPU (``--tiny``)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_clip.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_clip", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_clip"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_run_measures_every_group_and_writes_json(tmp_path):
    out = tmp_path / "gpu_clip.json"
    command = [sys.executable, str(SCRIPT), "--tiny", "--steps", "1", "--compile-backend", "eager"]
    proc = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "s/step" in proc.stdout and "dense limit" in proc.stdout and "skip rate" in proc.stdout
    data = json.loads(out.read_text())
    results = {(r["group"], r["variant"].split(" ")[0]): r for r in data["results"]}
    assert {group for group, _ in results} == {
        "baseline",
        "cache",
        "attention",
        "precision",
        "memory",
        "compile",
    }
    baseline = results[("baseline", "float32,")]  # --tiny runs in float32 (bf16 kernels are slow on CPUs)
    assert baseline["status"] == "ok" and baseline["s_per_step"] > 0 and baseline["decode_s"] > 0
    assert baseline["s_per_clip"] > 50 * baseline["s_per_step"]
    for kind in ("first_block", "mag", "taylorseer", "taylorseer_lite"):
        cache = results[("cache", kind)]
        assert cache["status"] == "ok" and cache["extra"]["skipped_step_s"] > 0, cache
    assert results[("attention", "_native_math")]["status"] == "ok"
    assert results[("precision", "fp16")]["status"] == "ok"
    assert results[("memory", "group_offload")]["status"] == "ok"
    assert results[("memory", "model_offload")]["status"] == "skipped"
    assert "needs a GPU" in results[("memory", "sequential_offload")]["note"]
    compiled = results[("compile", "compile_repeated_blocks")]
    assert compiled["status"] == "ok" and compiled["extra"]["compile_call_s"] > 0
    assert data["size"] == "tiny" and data["flops"]["total"] > 0


def test_variants_outside_the_budget_or_failing_become_results():
    gpu_clip = load_script()
    bench = gpu_clip.Bench(gpu_clip.build_parser().parse_args(["--tiny", "--budget", "0"]))

    def fail():
        raise RuntimeError("kernel missing")

    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 60 GiB")

    bench.attempt("cache", "mag", 10, fail)
    bench.budget = gpu_clip.Budget(1000)
    bench.attempt("attention", "flash", 10, fail)
    bench.attempt("attention", "sage", 10, oom)
    bench.args.only = {"memory"}
    bench.attempt("cache", "first_block", 10, fail)
    statuses = [(r.variant, r.status, r.note.split(":")[0]) for r in bench.results]
    assert statuses == [
        ("mag", "skipped", "budget"),
        ("flash", "failed", "RuntimeError"),
        ("sage", "oom", "CUDA out of memory. Tried to allocate 60 GiB"),
    ]
