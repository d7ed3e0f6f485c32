"""Time reel assembly: 20 model-like clips (2 s, 720x480, 8 fps) with crossfades and captions.

Usage: python benchmarks/reel_assembly.py [--clips 20] [--seconds 2] [--preset medium]
Prints the wall time of the full path (retime 8 → 24 fps, crossfades, burned + subtitle captions,
title card) and of the stream-copy fast path on clips that already match the reel.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from storyreel.ffmpeg_tools import ffmpeg_exe
from storyreel.reel import ReelClip, assemble_reel


def make_clip(path: Path, seconds: float, fps: int, index: int) -> Path:
    source = f"testsrc2=size=720x480:rate={fps}:duration={seconds}"
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", source, "-vf", f"hue=h={index * 18}",
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)]  # fmt: skip
    subprocess.run(cmd, check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--preset", default="medium", help="x264 preset of the reel (default: medium)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = [make_clip(d / f"m{i}.mp4", args.seconds, 8, i) for i in range(args.clips)]
        ready = [make_clip(d / f"r{i}.mp4", args.seconds, 24, i) for i in range(args.clips)]
        clips = [
            ReelClip(f"shot-{i}", p, "crossfade", 0.5, f"Shot {i + 1}: somebody does something nice")
            for i, p in enumerate(model)
        ]
        result = assemble_reel(clips, d / "reel.mp4", captions="both", title="Benchmark", preset=args.preset)
        print(
            f"full path: {args.clips} clips x {args.seconds:g} s 720x480 8 fps -> {result.frames} frames "
            f"({result.duration:.2f} s) at 24 fps, crossfades + captions (burned: {result.captions_burned}) "
            f"+ title, x264 {args.preset}: {result.seconds:.2f} s wall"
        )
        started = time.perf_counter()
        fast = assemble_reel([ReelClip(f"shot-{i}", p) for i, p in enumerate(ready)], d / "fast.mp4",
                             captions="subtitles")  # fmt: skip
        elapsed = time.perf_counter() - started
        print(
            f"fast path (stream copy, fast_path={fast.fast_path}): {fast.frames} frames "
            f"in {elapsed:.2f} s wall"
        )


if __name__ == "__main__":
    main()
