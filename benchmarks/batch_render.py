"""Batch rendering benchmark: 6 shots on the tiny model in ONE process vs 6 separate single-shot processes.

One process loads the model, the face encoder and the imports once; separate processes pay for them
per shot. Both start from a fresh copy of the same project (no caches) and run the real CLI:

    python benchmarks/batch_render.py [--shots 6] [--steps 10]

Prints both wall-clock times and their ratio (separate / batch).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = [
    "{nora} and {sam} sit at a kitchen table with coffee, morning light",
    "{eileen} waves at the camera in front of a launch pad",
    "{sam} and {nora} lean toward the television and cheer",
    "{eileen} floats by a spacecraft window, the Earth behind her",
    "{nora} walks along a beach at sunset",
    "{sam} reads a newspaper on a train",
]


def write_project(root: Path, cast: Path, shots: int, steps: int) -> Path:
    shutil.copytree(cast, root / "cast")
    lines = [
        "title: Benchmark",
        "output: {size: 192x128, fps: 8, captions: none, title_card: false}",
        f"defaults: {{engine: ingredients, steps: {steps}, seconds: 1, seed: 1}}",
        "cast:",
        "  nora: {photos: [cast/nora/1.jpg], description: a young woman with long light-brown hair}",
        "  sam: {photos: [cast/sam/1.jpg], description: a young man with short dark hair}",
        "  eileen: {photos: [cast/eileen/1.jpg], description: a woman in an orange flight suit}",
        "shots:",
    ]
    for index in range(shots):
        lines += [f"  - id: s{index + 1}", f'    prompt: "{PROMPTS[index % len(PROMPTS)]}"']
    (root / "story.yaml").write_text("\n".join(lines) + "\n")
    return root / "story.yaml"


def run(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "storyreel", *args], check=True, capture_output=True)
    return time.perf_counter() - started


def render_seconds(project: Path) -> list[float]:
    records = sorted((project / "renders").glob("s*.json"))
    return [json.loads(p.read_text())["render_seconds"] for p in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    from ingredients_model.checkpoint import write_tiny_model_folder
    from storyreel.example import write_example_photos

    with tempfile.TemporaryDirectory(prefix="batch-render-") as tmp:
        tmp_path = Path(tmp)
        model = write_tiny_model_folder(tmp_path / "model")
        write_example_photos(tmp_path / "cast")
        common = ["--engine", "ingredients", "--model", str(model), "--no-reel"]

        batch = write_project(tmp_path / "batch", tmp_path / "cast", args.shots, args.steps)
        batch_seconds = run("render", str(batch), *common)

        single = write_project(tmp_path / "single", tmp_path / "cast", args.shots, args.steps)
        separate_seconds = sum(
            run("render", str(single), "--only", f"s{i + 1}", *common) for i in range(args.shots)
        )
        per_shot_batch = statistics.median(render_seconds(batch.parent))
        per_shot_single = statistics.median(render_seconds(single.parent))

    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"tiny model, {args.shots} shots x {args.steps} steps, CPU ({os.cpu_count()} cores, OMP {threads})")
    rows = [
        (f"one process, {args.shots} shots", batch_seconds, per_shot_batch),
        (f"{args.shots} processes, one shot each", separate_seconds, per_shot_single),
    ]
    for label, total, shot in rows:
        print(f"{label:<30} {total:7.1f} s   (median render of one shot {shot:.2f} s)")
    print(f"{'ratio separate / batch':<30} {separate_seconds / batch_seconds:7.2f}x")


if __name__ == "__main__":
    main()
