"""A campaign on the preview engine: 2 products x 3 formats (16:9, 9:16, 1:1) from one story file.

Usage: python benchmarks/campaign.py [--shots 4] [--seconds 2] [--size 720x480]
One shot of the story names the product, the others do not, so the second product's variant renders only
that shot and reuses the rest from the clip store. Prints the wall time of the whole batch (rendering,
face detection for reframing, six reels, review pages and the campaign page), how many clips were rendered
and reused, how each clip filled each format, and a second run's time (everything current).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

from storyreel.example import write_example_photos
from storyreel.runner import RenderOptions, render_stories

PROMPTS = [
    "{nora} smiles at the camera in a bright shop",
    "{nora} and {sam} try on ${product} together, laughing",
    "{sam} walks out of the shop into the sunlight",
    "{nora} waves goodbye from the shop door",
]


def story_text(shots: int, seconds: float, size: str) -> str:
    lines = [
        "title: ${product} for launch day",
        "vars: {product: sneakers}",
        f"output: {{size: {size}, file: 'ad-${{product}}.mp4', formats: ['16:9', '9:16', '1:1']}}",
        f"defaults: {{engine: preview, seconds: {seconds}}}",
        "cast:",
        "  nora: {photos: [cast/nora/1.jpg], description: a young woman with long light-brown hair}",
        "  sam: {photos: [cast/sam/1.jpg], description: a young man with short dark hair}",
        "shots:",
    ]
    for index in range(shots):
        lines += [f"  - id: s{index + 1}", f'    prompt: "{PROMPTS[index % len(PROMPTS)]}"']
        lines += [f"    caption: Shot {index + 1} with ${{product}}"]
    lines.append("brand: {end_card: {text: 'Get your ${product}', url: 'shop.example.com', seconds: 2}}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--size", default="720x480")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shop"
        write_example_photos(root / "cast")
        story = root / "ad.yaml"
        story.write_text(story_text(args.shots, args.seconds, args.size), encoding="utf-8")
        options = RenderOptions(variables={"product": ["sneakers", "boots"]})
        started = time.perf_counter()
        reports = render_stories([story], options)
        wall = time.perf_counter() - started
        rendered = sum(len(r.rendered) for r in reports)
        reused = sum(len(r.reused) for r in reports)
        reels = sum(len(r.reels) for r in reports)
        print(f"campaign: 2 products x 3 formats, {args.shots} shots of {args.seconds:g} s at {args.size}")
        print(
            f"  wall time          {wall:6.1f} s  (render, reframe, {reels} reels, review + campaign pages)"
        )
        print(f"  clips rendered     {rendered:6d}")
        print(f"  clips reused       {reused:6d}  (from the clip store: the other product's variant)")
        for report in reports:
            for note in report.notes:
                print(f"  {report.variables['product']}: {note}")
        started = time.perf_counter()
        again = render_stories([story], options)
        print(f"  second run         {time.perf_counter() - started:6.1f} s  "
              f"({sum(len(r.skipped) for r in again)} shots current, reels up to date)")  # fmt: skip


if __name__ == "__main__":
    main()
