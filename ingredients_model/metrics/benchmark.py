"""Table 1 of the paper on an evaluation set: Face Sim, CLIPScore and FID, by protocol.

Evaluation set layout (one folder per case)::

    DIR/<case>/ref_1.jpg, ref_2.jpg, ...   reference photos, one person each, left to right by name
    DIR/<case>/prompt.txt                  the text prompt (UTF-8)

Usage::

    python -m ingredients_model.metrics.benchmark --data DIR --model MODEL [--out RENDERS] \\
        [--videos VIDEOS] [--protocol released|strict|both] [--clip CLIP_DIR] \\
        [--inception FILE_OR_DIR] [--face-models BUFFALO_L]

Without ``--videos`` every case is rendered with the pipeline into ``--out`` (``<case>.mp4``; existing files
are reused, so an interrupted run resumes); with ``--videos`` the clips ``VIDEOS/<case>.mp4`` are evaluated.

``--protocol released`` (:mod:`ingredients_model.metrics.released`) reproduces the public Ingredients scripts,
and its row is printed under the paper's: buffalo_l faces (``--face-models``, else
``MODEL/face_encoder/models/buffalo_l``, else ``~/.insightface/models/buffalo_l``), 24 frames, best pair per
frame, per-frame "FID" from torchvision's Inception-v3 (``--inception`` or torch's hub cache).
``--protocol strict`` is ours (:mod:`ingredients_model.metrics.face_similarity`): ``--frames`` evenly spaced
frames (16), every person matched one to one, minimum over people; set-level FID of torch-fidelity features of
the matched face crops against the reference faces. ``both`` (default) prints both rows; a protocol whose
face model is missing is then reported as not computed instead of stopping the run. Table values are means
over cases (Face Sim in percent).
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
from ingredients_model.metrics import released
from ingredients_model.metrics.face_similarity import (
    BACKENDS,
    FaceBackend,
    clip_face_similarity,
    load_face_backend,
    reference_face,
)
from ingredients_model.metrics.fid import INCEPTION_WEIGHTS_FILE, FeatureExtractor, fid
from ingredients_model.metrics.protocols import (
    DEFAULT_PROTOCOL,
    PROTOCOL_CHOICES,
    PROTOCOL_LABELS,
    expand_protocol,
)
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
    """Scores of one case by one protocol (face_sim as a fraction; None where not measurable)."""

    name: str
    video: str
    face_sim: float | None
    frames: int
    frames_with_faces: int
    per_ref: list[float | None] = field(default_factory=list)  # strict: per person, when matched
    clip_score: float | None = None
    fid: float | None = None  # released: the case's mean per-frame value (strict FID is set-level)


@dataclass
class ProtocolResult:
    """One protocol's table row (means over cases; face_sim in percent) and the per-case details."""

    protocol: str
    label: str
    face_model: str
    face_sim: float | None
    clip_score: float | None
    fid: float | None
    cases: list[CaseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def not_computed(cls, protocol: str, reason: str) -> ProtocolResult:
        return cls(
            protocol, PROTOCOL_LABELS[protocol], "–", None, None, None, notes=[f"not computed: {reason}"]
        )


@dataclass
class BenchmarkResult:
    """The protocols' rows, in the order run (released first)."""

    protocols: dict[str, ProtocolResult]

    def to_dict(self) -> dict:
        return {"paper": PAPER_ROW, "protocols": {name: asdict(r) for name, r in self.protocols.items()}}


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


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def evaluate_strict(
    cases: Sequence[Case],
    videos: dict[str, Path],
    backend: FaceBackend,
    *,
    clip_scorer=None,
    fid_extractor: FeatureExtractor | None = None,
    num_frames: int = DEFAULT_NUM_FRAMES,
) -> ProtocolResult:
    """``protocol: strict`` on every case (see the module docstring)."""
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
                frames=result.summary.frames,
                frames_with_faces=result.summary.frames_with_faces,
                per_ref=list(result.summary.per_ref),
                clip_score=clip_scorer.score(frames, case.prompt) if clip_scorer is not None else None,
            )
        )
    notes = []
    if backend.offline_fallback:
        notes.append(f"Face Sim measured with {backend.label}.")
    fid_value = None
    if fid_extractor is None:
        notes.append(f"FID not computed: pass --inception with torch-fidelity's {INCEPTION_WEIGHTS_FILE}.")
    elif len(fake_crops) < 2 or len(ref_crops) < 2:
        notes.append(f"FID not computed: {len(fake_crops)} generated face crops matched (need ≥ 2).")
    else:
        fid_value = fid(ref_crops, fake_crops, fid_extractor)
    if clip_scorer is None:
        notes.append("CLIPScore not computed: pass --clip with a local CLIP ViT-B/32 folder.")
    return ProtocolResult(
        protocol="strict",
        label=PROTOCOL_LABELS["strict"],
        face_model=backend.label,
        face_sim=100.0 * sum(r.face_sim or 0.0 for r in results) / len(results),
        clip_score=_mean([r.clip_score for r in results]),
        fid=fid_value,
        cases=results,
        notes=notes,
    )


def evaluate_released(
    cases: Sequence[Case],
    videos: dict[str, Path],
    face_app,
    *,
    clip_scorer=None,
    features: released.ReleasedFeatureExtractor | None = None,
    face_model: str = "insightface buffalo_l (w600k_r50), det_size 320",
) -> ProtocolResult:
    """``protocol: released`` on every case: the public scripts' rules (see
    :mod:`ingredients_model.metrics.released`).

    ``face_app`` is an insightface ``FaceAnalysis`` (:func:`released.load_face_analysis`). Reference photos
    are opened as the script opens them (``Image.open(...).convert("RGB")``). A case with no face in any
    frame scores Face Sim 0 (the script's default for an empty list) and is left out of the FID mean.
    """
    results: list[CaseResult] = []
    notes: list[str] = []
    for case in cases:
        refs = []
        for ref in case.refs:
            try:
                with Image.open(ref) as photo:
                    image = photo.convert("RGB")
            except OSError as err:
                raise IngredientsError(
                    f"cannot read reference {ref}: {err}", "Use a JPEG or PNG photo."
                ) from err
            refs.append(released.reference_face(face_app, image, what=f"reference {ref}"))
        video = videos[case.name]
        scored = released.score_video(face_app, refs, video, features)
        if scored.frames_without_faces:
            notes.append(
                f"{case.name}: {scored.frames_without_faces} of {scored.frames} frames without a face were "
                "left out (the public script stops on such a frame)."
            )
        results.append(
            CaseResult(
                name=case.name,
                video=str(video),
                face_sim=scored.face_sim,
                frames=scored.frames,
                frames_with_faces=scored.frames - scored.frames_without_faces,
                clip_score=released.clip_score_video(clip_scorer, video, case.prompt)
                if clip_scorer
                else None,
                fid=scored.fid,
            )
        )
    if features is None:
        notes.append(f"FID not computed: needs torchvision and {released.INCEPTION_FILE} (--inception).")
    if clip_scorer is None:
        notes.append("CLIPScore not computed: pass --clip with a local CLIP ViT-B/32 folder.")
    return ProtocolResult(
        protocol="released",
        label=PROTOCOL_LABELS["released"],
        face_model=face_model,
        face_sim=100.0 * sum(r.face_sim or 0.0 for r in results) / len(results),
        clip_score=_mean([r.clip_score for r in results]),
        fid=_mean([r.fid for r in results]),
        cases=results,
        notes=notes,
    )


def format_table(result: BenchmarkResult) -> str:
    """The paper's Table 1 format: the paper's Ingredients row, then one row per protocol (released first)."""

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
    ]
    for name, row in result.protocols.items():
        rows.append(
            (
                f"this run, {name} ({len(row.cases)} cases)",
                cell(row.face_sim),
                cell(row.clip_score),
                cell(row.fid),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        " | ".join(
            text.ljust(w) if i == 0 else text.rjust(w)
            for i, (text, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    for name, row in result.protocols.items():
        lines.append(f"{name}: {row.label}; faces: {row.face_model}")
        lines += [f"  note: {note}" for note in row.notes]
    return "\n".join(lines)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _strict_fid_extractor(inception: Path | None, device: str):
    """torch-fidelity's Inception for the strict FID from ``--inception`` (the file or its folder)."""
    if inception is None:
        return None
    from ingredients_model.metrics.fid import inception_extractor

    return inception_extractor(inception, device=device)


def _released_features(inception: Path | None, device: str):
    """torchvision's Inception for the released FID from ``--inception`` or torch's hub cache."""
    path = released.find_inception_weights(inception)
    return released.torchvision_inception(path, device=device)


def run_protocols(
    args: argparse.Namespace, cases: Sequence[Case], videos: dict[str, Path], clip_scorer
) -> BenchmarkResult:
    """Set up and run each chosen protocol. With ``both``, a protocol that cannot run is reported as not
    computed; a protocol asked for by name raises instead. A missing FID network is a note either way."""
    chosen = expand_protocol(args.protocol)
    rows: dict[str, ProtocolResult] = {}
    for name in chosen:
        try:
            if name == "released":
                folder = released.find_buffalo_l(args.face_models, args.model)
                app = released.load_face_analysis(folder, device=args.device, det_size=args.det_size)
                features, fid_note = None, None
                try:
                    features = _released_features(args.inception, args.device)
                except IngredientsError as err:
                    fid_note = f"FID not computed: {err.message}"
                row = evaluate_released(
                    cases,
                    videos,
                    app,
                    clip_scorer=clip_scorer,
                    features=features,
                    face_model=f"insightface buffalo_l from {folder}, det_size {args.det_size}",
                )
                if fid_note:
                    row.notes = [n for n in row.notes if not n.startswith("FID not computed")] + [fid_note]
            else:
                face_dir = args.model / "face_encoder" if args.model is not None else None
                backend = load_face_backend(args.backend, face_dir, device=args.device)
                extractor, fid_note = None, None
                try:
                    extractor = _strict_fid_extractor(args.inception, args.device)
                except IngredientsError as err:
                    fid_note = f"FID not computed: {err.message}"
                row = evaluate_strict(
                    cases,
                    videos,
                    backend,
                    clip_scorer=clip_scorer,
                    fid_extractor=extractor,
                    num_frames=args.frames,
                )
                if fid_note:
                    row.notes = [n for n in row.notes if not n.startswith("FID not computed")] + [fid_note]
        except IngredientsError as err:
            if len(chosen) == 1:
                raise
            row = ProtocolResult.not_computed(
                name, f"{err.message} ({err.hint})" if err.hint else err.message
            )
        rows[name] = row
    return BenchmarkResult(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m ingredients_model.metrics.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="evaluation set folder")
    parser.add_argument(
        "--model", type=Path, help="model folder (renders, and face_encoder/ for the face models)"
    )
    parser.add_argument(
        "--videos", type=Path, help="evaluate existing VIDEOS/<case>.mp4 instead of rendering"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmark_renders"), help="where renders go")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOL_CHOICES,
        default=DEFAULT_PROTOCOL,
        help="released, strict or both (default)",
    )
    parser.add_argument("--clip", type=Path, help="local CLIP ViT-B/32 folder (for CLIPScore)")
    parser.add_argument(
        "--inception",
        type=Path,
        help=f"FID weights: a file, or a folder holding {released.INCEPTION_FILE} (released; default: "
        f"torch's hub cache) and/or {INCEPTION_WEIGHTS_FILE} (strict)",
    )
    parser.add_argument("--face-models", type=Path, help="released: folder with buffalo_l's ONNX files")
    parser.add_argument(
        "--det-size", type=int, default=released.DET_SIZE, help="released: detector size (320)"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="strict: face similarity backend")
    parser.add_argument(
        "--frames",
        type=int,
        default=DEFAULT_NUM_FRAMES,
        help="strict: frames sampled per clip (released: 24)",
    )
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
        clip_scorer = None
        if args.clip is not None:
            from ingredients_model.metrics.clip_score import ClipScorer

            clip_scorer = ClipScorer(args.clip, device=args.device)
        result = run_protocols(args, cases, videos, clip_scorer)
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
