"""Ray benchmark: 12 tiny-model shots in one local process vs on a local Ray with 2 workers.

Both render a fresh copy of the same project (no caches, no reel) in this process: the local run loads
the model once and renders the shots one after the other; the Ray run starts 2 workers (1 CPU each),
which load the model in parallel, fill the caches once, and render the shots in parallel:

    python benchmarks/ray_batch.py [--shots 12] [--steps 4]

Prints both wall-clock times (Ray's split into starting the workers with their model and filling the
caches, then the shots), their ratio (local / Ray), and Ray's scheduling overhead per shot: the
time from sending a shot to having its clip on the driver, less the time the worker spent on it
(submission, scheduling, moving the files and the clip, the driver's loop), median and mean in ms.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_render import render_seconds, write_project  # the same tiny-model project as batch_render.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=12)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import ray
    import torch

    from ingredients_model.checkpoint import write_tiny_model_folder
    from storyreel.cluster import RayOptions
    from storyreel.cluster.driver import RayRunner
    from storyreel.example import write_example_photos
    from storyreel.runner import RenderOptions, Runner
    from storyreel.story import load_story

    quiet = Console(file=io.StringIO())
    with tempfile.TemporaryDirectory(prefix="ray-batch-") as tmp:
        tmp_path = Path(tmp)
        model = write_tiny_model_folder(tmp_path / "model")
        write_example_photos(tmp_path / "cast")
        local = write_project(tmp_path / "local", tmp_path / "cast", args.shots, args.steps)
        on_ray = tmp_path / "ray"
        shutil.copytree(local.parent, on_ray)
        options = RenderOptions(engine="ingredients", model=model, reel=False)

        started = time.perf_counter()
        Runner(options, quiet).run([load_story(local)])
        local_seconds = time.perf_counter() - started
        local_shot = statistics.median(render_seconds(local.parent))

        ray.init(num_cpus=args.workers, include_dashboard=False, logging_level=logging.WARNING)
        try:
            runner = RayRunner(RenderOptions(**{**options.__dict__, "ray": RayOptions()}), quiet)
            started = time.perf_counter()
            (report,) = runner.run([load_story(on_ray / "story.yaml")])
            ray_seconds = time.perf_counter() - started
        finally:
            ray.shutdown()
        assert len(report.rendered) == args.shots and not report.failed, report
        overheads = [(trip - worker) * 1000 for trip, worker in runner.round_trips.values()]
        ray_shot = statistics.median(render_seconds(on_ray))

    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"tiny model, {args.shots} shots x {args.steps} steps, CPU ({os.cpu_count()} cores, OMP {threads})")
    print(f"torch threads in this process: {torch.get_num_threads()}; Ray workers: 1 each")
    print(f"{'one local process':<34} {local_seconds:7.1f} s   (median render of a shot {local_shot:.2f} s)")
    print(f"{f'Ray, {args.workers} workers (1 CPU each)':<34} {ray_seconds:7.1f} s   "
          f"(median render of a shot {ray_shot:.2f} s)")  # fmt: skip
    print(f"{'  of which workers + caches ready':<34} {runner.phases['setup']:7.1f} s, then shots "
          f"{runner.phases['shots']:.1f} s")  # fmt: skip
    print(f"{'ratio local / Ray':<34} {local_seconds / ray_seconds:7.2f}x")
    print(f"{'Ray scheduling overhead per shot':<34} {statistics.median(overheads):7.1f} ms median, "
          f"{statistics.mean(overheads):.1f} ms mean")  # fmt: skip


if __name__ == "__main__":
    main()
