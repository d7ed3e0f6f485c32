"""The paper's evaluation protocol on an evaluation set: Face Sim, CLIPScore and FID, as in Table 1.

Evaluation set layout (one folder per case)::

    DIR/<case>/ref_1.jpg, ref_2.jpg, ...   reference photos, one person each, left to right by name
    DIR/<case>/prompt.txt                  the text prompt (UTF-8)

Usage::

    python -m ingredients_model.metrics.benchmark --data DIR --model MODEL [--out RENDERS] \\
        [--videos VIDEOS] [--clip CLIP_DIR] [--inception FILE] [--backend auto|arcface|curricularface|dlib]

Without ``--videos`` every case is rendered with the pipeline into ``--out`` (``<case>.mp4``; existing files
are reused, so an interrupted run resumes); with ``--videos`` the clips ``VIDEOS/<case>.mp4`` are evaluated.

Per case: 16 evenly spaced frames; Face Sim = mean over frames of the minimum greedy-matched similarity
(:mod:`ingredients_model.metrics.face_similarity`; a case without any detected face scores 0, as in
ConsisID's code); CLIPScore = mean over frames (needs ``--clip``); FID = between all reference faces and
all generated face crops matched to a reference (needs ``--inception``). Table values are means over cases.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from ingredients_model.errors import IngredientsError
from ingredients_model.metrics.face_similarity import (
    BACKENDS,
    FaceBackend,
    clip_face_similarity,
    load_face_backend,
    reference_face,
)
from ingredients_model.metrics.fid import FeatureExtractor, fid
from ingredients_model.metrics.video import DEFAULT_NUM_FRAMES, sample_video_frames, write_video

PAPER_ROW = {"method": "Ingredients (paper, Table 1)", "face_sim": 77.1, "clip_score": 26.7, "fid": 106.3}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass(frozen=True)
class Case:
    """One evaluation case: its name, reference photos (left to right) and prompt."""

    name: str
    refs: tuple[Path, ...]
    prompt: str


@dataclass
class CaseResult:
    """Scores of one case (face_sim in [0, 1]; clip_score ×100 or None without a CLIP model)."""

    name: str
    video: str
    face_sim: float
    per_ref: list[float | None]
    frames: int
    frames_with_faces: int
    clip_score: float | None = None


@dataclass
class BenchmarkResult:
    """Table values (means over cases; face_sim in percent) and the per-case details."""

    backend: str
    backend_label: str
    face_sim: float
    clip_score: float | None
    fid: float | None
    cases: list[CaseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**asdict(self), "paper": PAPER_ROW}


def load_cases(data_dir: Path) -> list[Case]:
    """Read the evaluation set at ``data_dir`` (layout in the module docstring), sorted by case name."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise IngredientsError(
            f"evaluation set not found: {data_dir}", "Pass --data DIR with DIR/<case>/ folders."
        )
    cases, problems = [], []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        refs = sorted(p for p in folder.glob("ref_*") if p.suffix.lower() in IMAGE_SUFFIXES)
        prompt_file = folder / "prompt.txt"
        prompt = prompt_file.read_text(encoding="utf-8").strip() if prompt_file.is_file() else ""
        if not refs:
            problems.append(f"{folder.name}: no ref_*.jpg/png")
        if not prompt:
            problems.append(f"{folder.name}: missing or empty prompt.txt")
        if refs and prompt:
            cases.append(Case(folder.name, tuple(refs), prompt))
    if problems or not cases:
        raise IngredientsError(
            f"bad evaluation set {data_dir}: " + ("; ".join(problems) or "no case folders"),
            "Each case is DIR/<case>/ with ref_1.jpg (ref_2.jpg, ...) and prompt.txt.",
        )
    return cases


def render_cases(
    cases: Sequence[Case],
    model_dir: Path,
    out_dir: Path,
    *,
    device: str = "cpu",
    steps: int = 50,
    guidance: float = 6.0,
    seed: int = 42,
    num_frames: int | None = None,
    fps: int = 8,
) -> dict[str, Path]:
    """Render every case missing from ``out_dir`` with the Ingredients pipeline; returns case → video."""
    import torch

    from ingredients_model.checkpoint import load_pipeline
    from ingredients_model.faces import load_face_encoder
    from ingredients_model.photos import load_photo

    out_dir = Path(out_dir)
    videos = {case.name: out_dir / f"{case.name}.mp4" for case in cases}
    todo = [case for case in cases if not videos[case.name].is_file()]
    if not todo:
        return videos
    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    pipe = load_pipeline(Path(model_dir), device=device, dtype=dtype)
    encoder = load_face_encoder(Path(model_dir) / "face_encoder", device=device, dtype=dtype)
    for number, case in enumerate(todo, start=1):
        print(f"[{number}/{len(todo)}] rendering {case.name}", file=sys.stderr)
        identities = [encoder.encode(load_photo(ref)) for ref in case.refs]
        output = pipe(
            prompt=case.prompt,
            identities=identities,
            num_inference_steps=steps,
            guidance_scale=guidance,
            num_frames=num_frames,
            generator=torch.Generator().manual_seed(seed),
            output_type="np",
        )
        write_video(output.frames[0], videos[case.name], fps=fps)
    return videos


def evaluate_cases(
    cases: Sequence[Case],
    videos: dict[str, Path],
    backend: FaceBackend,
    *,
    clip_scorer=None,
    fid_extractor: FeatureExtractor | None = None,
    num_frames: int = DEFAULT_NUM_FRAMES,
) -> BenchmarkResult:
    """Score every case's video against its references (see the module docstring for the protocol)."""
    from ingredients_model.photos import load_photo

    results: list[CaseResult] = []
    ref_crops: list[Image.Image] = []
    fake_crops: list[Image.Image] = []
    for case in cases:
        photos = [load_photo(ref) for ref in case.refs]
        refs = [
            reference_face(backend, photo, what=f"reference {ref}")
            for photo, ref in zip(photos, case.refs, strict=True)
        ]
        ref_crops += [face.crop(photo) for face, photo in zip(refs, photos, strict=True)]
        frames = sample_video_frames(videos[case.name], num=num_frames)
        result = clip_face_similarity(backend, [r.embedding for r in refs], frames)
        for frame, faces, match in zip(frames, result.detections, result.frames, strict=True):
            fake_crops += [faces[m.face].crop(frame) for m in match.matches]
        results.append(
            CaseResult(
                name=case.name,
                video=str(videos[case.name]),
                face_sim=result.summary.face_sim or 0.0,
                per_ref=list(result.summary.per_ref),
                frames=result.summary.frames,
                frames_with_faces=result.summary.frames_with_faces,
                clip_score=clip_scorer.score(frames, case.prompt) if clip_scorer is not None else None,
            )
        )
    notes = []
    if backend.offline_fallback:
        notes.append(f"Face Sim measured with {backend.label}.")
    fid_value = None
    if fid_extractor is None:
        notes.append("FID not computed: pass --inception with the FID Inception weights.")
    elif len(fake_crops) < 2 or len(ref_crops) < 2:
        notes.append(f"FID not computed: {len(fake_crops)} generated face crops matched (need ≥ 2).")
    else:
        fid_value = fid(ref_crops, fake_crops, fid_extractor)
    if clip_scorer is None:
        notes.append("CLIPScore not computed: pass --clip with a local CLIP ViT-B/32 folder.")
    clip_values = [r.clip_score for r in results if r.clip_score is not None]
    return BenchmarkResult(
        backend=backend.name,
        backend_label=backend.label,
        face_sim=100.0 * sum(r.face_sim for r in results) / len(results),
        clip_score=sum(clip_values) / len(clip_values) if clip_values else None,
        fid=fid_value,
        cases=results,
        notes=notes,
    )


def format_table(result: BenchmarkResult) -> str:
    """The paper's Table 1 format: our row under the paper's Ingredients row."""

    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    rows = [
        ("Method", "Face Sim (%)", "CLIPScore", "FID"),
        (
            PAPER_ROW["method"],
            cell(PAPER_ROW["face_sim"]),
            cell(PAPER_ROW["clip_score"]),
            cell(PAPER_ROW["fid"]),
        ),
        (
            f"this run ({result.backend}, {len(result.cases)} cases)",
            cell(result.face_sim),
            cell(result.clip_score),
            cell(result.fid),
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        " | ".join(
            text.ljust(w) if i == 0 else text.rjust(w)
            for i, (text, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines + [f"note: {note}" for note in result.notes])


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m ingredients_model.metrics.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="evaluation set folder")
    parser.add_argument("--model", type=Path, help="model folder (renders, and face_encoder/ for ArcFace)")
    parser.add_argument(
        "--videos", type=Path, help="evaluate existing VIDEOS/<case>.mp4 instead of rendering"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmark_renders"), help="where renders go")
    parser.add_argument("--clip", type=Path, help="local CLIP ViT-B/32 folder (for CLIPScore)")
    parser.add_argument("--inception", type=Path, help="FID Inception weights file or folder (for FID)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="face similarity backend")
    parser.add_argument("--frames", type=int, default=DEFAULT_NUM_FRAMES, help="frames sampled per clip")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--num-frames", type=int, help="frames to render (default: the model's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        cases = load_cases(args.data)
        if args.videos is not None:
            videos = {case.name: args.videos / f"{case.name}.mp4" for case in cases}
            missing = [str(path) for path in videos.values() if not path.is_file()]
            if missing:
                raise IngredientsError(f"videos missing: {', '.join(missing)}", "Name them <case>.mp4.")
        elif args.model is None:
            raise IngredientsError("nothing to evaluate", "Pass --model MODEL to render, or --videos DIR.")
        else:
            videos = render_cases(
                cases,
                args.model,
                args.out,
                device=args.device,
                steps=args.steps,
                guidance=args.guidance,
                seed=args.seed,
                num_frames=args.num_frames,
            )
        face_dir = args.model / "face_encoder" if args.model is not None else None
        backend = load_face_backend(args.backend, face_dir, device=args.device)
        clip_scorer = None
        if args.clip is not None:
            from ingredients_model.metrics.clip_score import ClipScorer

            clip_scorer = ClipScorer(args.clip, device=args.device)
        extractor = None
        if args.inception is not None:
            from ingredients_model.metrics.fid import inception_extractor

            extractor = inception_extractor(args.inception, device=args.device)
        result = evaluate_cases(
            cases, videos, backend, clip_scorer=clip_scorer, fid_extractor=extractor, num_frames=args.frames
        )
    except IngredientsError as err:
        print(f"error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return 1
    print(format_table(result))
    if args.json is not None:
        _write_json(args.json, result.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
