"""`prepare`: videos + captions → cached training samples (see data.py for both formats).

Per clip: sample frames (every `frame_stride`-th: 2 in the paper), find the people (manifest boxes, or face
detection per frame linked across frames by embedding similarity), keep clips with at least `min_people`,
encode the identities (a reference photo, or a random frame per person: `reference_draws` draws, one of
which training picks per step), build per-person masks (SAM prompted with the face boxes, threshold on the
mask logits; or box-only), downsample them to the latent token grid by area coverage, and cache the VAE
latent distributions (mean and std: training draws the sample), the identity-canvas latent distribution per
draw and the T5 embeddings. Runs under `accelerate launch` too: each process takes every world-th clip.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from ingredients_model.errors import IngredientsError, download_hint
from ingredients_model.training.config import PrepareConfig
from ingredients_model.training.data import ManifestEntry, interpolate_boxes, read_manifest
from ingredients_model.training.masks import (
    SamMasker,
    box_scores,
    downsample_labels,
    label_preview,
    labels_from_scores,
    sam_labels,
)
from ingredients_model.training.start import face_encoder_dir

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class SkipClip(Exception):
    """A clip that cannot be used (too short, too few people, no usable face); it is logged and skipped."""


# ------------------------------------------------------------------------------------------- video


def read_frames(path: Path, count: int, stride: int = 1, start: int = 0) -> list[np.ndarray]:
    """`count` RGB frames [H, W, 3] uint8: frames start, start + stride, ... of the video (ffmpeg)."""
    import imageio_ffmpeg

    if not Path(path).is_file():
        raise SkipClip(f"video not found: {path}")
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = []
    try:
        for index, raw in enumerate(reader):
            if index >= start and (index - start) % stride == 0:
                frames.append(np.frombuffer(raw, np.uint8).reshape(height, width, 3).copy())
                if len(frames) == count:
                    break
    finally:
        reader.close()
    if len(frames) < count:
        raise SkipClip(f"{path}: {len(frames)} frames from {start} at stride {stride}, need {count}")
    return frames


def center_crop_box(width: int, height: int, aspect: float) -> tuple[int, int, int, int]:
    """(x0, y0, w, h) of the largest centred crop with aspect width/height = `aspect`."""
    if width / height > aspect:
        w = round(height * aspect)
        return (width - w) // 2, 0, w, height
    h = round(width / aspect)
    return 0, (height - h) // 2, width, h


# ----------------------------------------------------------------------------------------- faces


@dataclass
class Detection:
    box: np.ndarray  # [4] x0, y0, x1, y1
    score: float
    embedding: np.ndarray  # L2-normalised


class DlibDetector:
    """Offline dlib HOG detection + 128-d descriptors (ingredients_model.face_tools)."""

    default_link_threshold = 0.82  # cosine of unit vectors at dlib's same-person distance 0.6

    def detect(self, frame: np.ndarray) -> list[Detection]:
        from ingredients_model.face_tools import detect_faces, face_descriptor

        image = Image.fromarray(frame)
        out = []
        for box in detect_faces(image):
            vector = face_descriptor(image, box)
            out.append(
                Detection(
                    np.array([box.left, box.top, box.right, box.bottom], float),
                    box.score,
                    vector / max(np.linalg.norm(vector), 1e-8),
                )
            )
        return out


class InsightfaceDetector:
    """The released antelopev2 pair from `<model>/face_encoder`: SCRFD detection + glintr100 ArcFace."""

    default_link_threshold = 0.3  # ArcFace cosine similarity

    def __init__(self, face_encoder_dir: Path, device: torch.device):
        from insightface.model_zoo import get_model

        from ingredients_model.faces import (
            ARCFACE_FILE,
            SCRFD_FILE,
            ArcFaceEmbedder,
            insightface_ctx_id,
            onnx_providers,
        )

        det_path, arc_path = (Path(face_encoder_dir) / name for name in (SCRFD_FILE, ARCFACE_FILE))
        missing = [str(p) for p in (det_path, arc_path) if not p.is_file()]
        if missing:
            raise IngredientsError(
                f"insightface detector files missing: {', '.join(missing)}",
                download_hint(Path(face_encoder_dir).parent) + ", or set detector: dlib",
            )
        self.detector = get_model(str(det_path), providers=onnx_providers(device))
        self.detector.prepare(ctx_id=insightface_ctx_id(device), input_size=(640, 640), det_thresh=0.5)
        self.arcface = ArcFaceEmbedder(arc_path, device)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        boxes, kpss = self.detector.detect(bgr, max_num=0, metric="default")
        out = []
        for box, kps in zip(
            boxes if boxes is not None else [], kpss if kpss is not None else [], strict=False
        ):
            vector = self.arcface.embed_keypoints(bgr, kps)
            out.append(
                Detection(
                    np.asarray(box[:4], float), float(box[4]), vector / max(np.linalg.norm(vector), 1e-8)
                )
            )
        return out


def make_detector(config: PrepareConfig, device: torch.device) -> DlibDetector | InsightfaceDetector:
    """insightface when configured (or `auto` and the face encoder has the released detector), else dlib."""
    folder = face_encoder_dir(config)
    if config.detector == "dlib":
        return DlibDetector()
    if config.detector == "auto":
        from ingredients_model.faces import ARCFACE_FILE, SCRFD_FILE

        if not all((folder / name).is_file() for name in (SCRFD_FILE, ARCFACE_FILE)):
            return DlibDetector()
    return InsightfaceDetector(folder, device)


def link_faces(detections: list[list[Detection]], threshold: float) -> list[dict[int, Detection]]:
    """Link per-frame detections into tracks (frame → detection) by cosine similarity to each track's
    mean embedding, one-to-one per frame (Hungarian assignment)."""
    from scipy.optimize import linear_sum_assignment

    tracks: list[dict[int, Detection]] = []
    means: list[np.ndarray] = []
    for t, found in enumerate(detections):
        if not found:
            continue
        assigned: dict[int, int] = {}
        if tracks:
            sim = np.array(
                [[float(d.embedding @ m) / max(np.linalg.norm(m), 1e-8) for m in means] for d in found]
            )
            rows, cols = linear_sum_assignment(-sim)
            assigned = {r: c for r, c in zip(rows, cols, strict=True) if sim[r, c] >= threshold}
        for i, det in enumerate(found):
            if i in assigned:
                k = assigned[i]
                tracks[k][t] = det
                means[k] = means[k] + det.embedding
            else:
                tracks.append({t: det})
                means.append(det.embedding.copy())
    return tracks


@dataclass
class Person:
    boxes: np.ndarray  # [T, 4] in crop pixels
    reference: Path | None = None
    seen: list[int] | None = None  # frames where the face was detected (None: every frame)


def people_from_tracks(
    tracks: list[dict[int, Detection]], frames: int, config: PrepareConfig
) -> list[Person]:
    """Tracks seen in enough frames → at most `max_people` people (most often seen), boxes interpolated."""
    needed = math.ceil(config.min_track_fraction * frames)
    good = [tr for tr in tracks if len(tr) >= needed]
    good.sort(key=lambda tr: (len(tr), np.mean([d.score for d in tr.values()])), reverse=True)
    good = good[: config.max_people]
    return [
        Person(
            interpolate_boxes({t: list(d.box) for t, d in tr.items()}, list(range(frames))), seen=sorted(tr)
        )
        for tr in good
    ]


def people_from_manifest(
    entry: ManifestEntry, frames: int, stride: int, offset: tuple[int, int]
) -> list[Person]:
    source = [entry.start + t * stride for t in range(frames)]
    shift = np.array([offset[0], offset[1], offset[0], offset[1]], float)
    return [Person(interpolate_boxes(p.boxes, source) - shift, p.reference) for p in entry.people or []]


def reference_crop(frame: np.ndarray, box: np.ndarray, margin: float = 1.0) -> Image.Image:
    """The face box enlarged by `margin` x its size on each side (clamped), as an image to encode."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    height, width = frame.shape[:2]
    xa, ya = max(0, int(x0 - margin * w)), max(0, int(y0 - margin * h))
    xb, yb = min(width, math.ceil(x1 + margin * w)), min(height, math.ceil(y1 + margin * h))
    return Image.fromarray(frame[ya:yb, xa:xb])


# ------------------------------------------------------------------------------------------ models


@dataclass
class ModelGeometry:
    frames: int
    height: int
    width: int
    latent_frames: int
    token_height: int
    token_width: int
    temporal_ratio: int = 4  # video frames per latent frame (after the first)


def model_geometry(config: PrepareConfig, vae_config: dict) -> ModelGeometry:
    """Frames / pixel size (config or the transformer's native size) and the routing-mask grid."""
    path = config.model_dir / "transformer" / "config.json"
    try:
        tcfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise IngredientsError(
            f"cannot read {path}: {exc}", "point model_dir at a complete model folder"
        ) from exc
    spatial = 2 ** (len(vae_config["block_out_channels"]) - 1)
    temporal = vae_config.get("temporal_compression_ratio", 4)
    frames = config.num_frames or tcfg["sample_frames"]
    height = config.height or tcfg["sample_height"] * spatial
    width = config.width or tcfg["sample_width"] * spatial
    patch = tcfg["patch_size"]
    if (frames - 1) % temporal or height % (spatial * patch) or width % (spatial * patch):
        raise IngredientsError(
            f"{frames} frames at {width}x{height} do not fit the model's compression",
            f"use 4k+1 frames and sizes divisible by {spatial * patch}",
        )
    if tcfg.get("use_learned_positional_embeddings") and (height, width) != (
        tcfg["sample_height"] * spatial,
        tcfg["sample_width"] * spatial,
    ):
        raise IngredientsError(
            f"this model has learned positional embeddings for {tcfg['sample_width'] * spatial}x"
            f"{tcfg['sample_height'] * spatial}, not {width}x{height}",
            "leave height/width unset",
        )
    return ModelGeometry(
        frames,
        height,
        width,
        (frames - 1) // temporal + 1,
        height // spatial // patch,
        width // spatial // patch,
        temporal,
    )


class Encoders:
    """VAE, T5 and face encoder of a model folder, loaded once."""

    def __init__(self, config: PrepareConfig, device: torch.device):
        from diffusers import AutoencoderKLCogVideoX
        from transformers import AutoTokenizer, T5EncoderModel

        from ingredients_model.faces import load_face_encoder

        dtype = _DTYPES[config.dtype]
        self.device, self.dtype = device, dtype
        folder = config.model_dir
        for sub in ("vae", "text_encoder", "tokenizer", "transformer"):
            if not (folder / sub).is_dir():
                raise IngredientsError(f"{folder / sub} is missing", download_hint(folder))
        self.vae = AutoencoderKLCogVideoX.from_pretrained(folder / "vae", torch_dtype=dtype).to(device).eval()
        if device.type == "cuda":
            self.vae.enable_tiling()
        self.tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
        self.text_encoder = (
            T5EncoderModel.from_pretrained(folder / "text_encoder", torch_dtype=dtype).to(device).eval()
        )
        self.faces = load_face_encoder(face_encoder_dir(config), device=device)
        self.max_sequence_length = config.max_sequence_length

    @torch.no_grad()
    def prompt(self, caption: str) -> torch.Tensor:
        """T5 embeddings [L, D] as CogVideoX (padded to max_sequence_length)."""
        ids = self.tokenizer(
            [caption],
            padding="max_length",
            max_length=self.max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self.device))[0][0].float().cpu()

    @torch.no_grad()
    def latent_distribution(
        self, frames: np.ndarray, generator: torch.Generator, noise_sigma: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[T, H, W, 3] uint8 → the VAE's latent distribution, scaled: (mean, std), each [F, C, h, w]
        (optionally noising the pixels first). Training draws a sample ``mean + std · ε`` per step."""
        x = torch.from_numpy(np.array(frames)).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
        if noise_sigma:
            x = x + torch.randn(x.shape, generator=generator) * noise_sigma
        dist = self.vae.encode(x.to(self.device, self.dtype)).latent_dist
        scale = self.vae.config.scaling_factor
        if getattr(self.vae.config, "invert_scale_latents", False):  # CogVideoX 1.5 VAEs
            scale = 1 / scale

        def tidy(t: torch.Tensor) -> torch.Tensor:
            return (t * scale)[0].permute(1, 0, 2, 3).float().cpu().contiguous()

        return tidy(dist.mean), tidy(dist.std)


# ----------------------------------------------------------------------------------------- prepare


def _resize(frames: list[np.ndarray], width: int, height: int) -> np.ndarray:
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BICUBIC)) for f in frames]
    )


PREPARE_VERSION = "2"
"""Bumped whenever the cached tensors' maths change (part of every clip key)."""

_KEY_EXCLUDES = {"manifest", "output_dir", "overwrite", "device", "sam_batch_frames"}


def clip_key(entry: ManifestEntry, config: PrepareConfig, sources: str) -> str:
    """sha256 of everything a cached clip depends on: its manifest line, the video file (size, mtime),
    the prepare options, the model folder and face encoder fingerprints (`sources`) and PREPARE_VERSION."""
    stat = entry.video.stat() if entry.video.is_file() else None
    data = {
        "entry": [
            str(entry.video),
            entry.start,
            entry.caption,
            [(p.boxes, str(p.reference)) for p in entry.people or []],
        ],
        "video": [stat.st_size, stat.st_mtime_ns] if stat else None,
        "config": config.model_dump(mode="json", exclude=_KEY_EXCLUDES),
        "sources": sources,
        "version": PREPARE_VERSION,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass
class ReferenceDraw:
    """One identity per person, each encoded from the frame ``frames[k]`` (None: the reference photo)."""

    frames: list[int | None]
    identities: list


def encode_reference_draws(
    people: list[Person],
    frames: list[np.ndarray],
    config: PrepareConfig,
    encoders: Encoders,
    generator: torch.Generator,
    clip_id: str,
) -> list[ReferenceDraw]:
    """``config.reference_draws`` draws of a random reference frame per person (the paper's random reference
    frame, drawn here because the face encoder does not run during training). A person with a reference photo
    uses it in every draw (one draw when every person has a photo). A frame whose crop the face encoder finds
    no face in is replaced by another random frame of that person; a person with no usable frame skips the
    clip."""
    from ingredients_model.photos import load_photo

    encoded: dict[tuple[int, int | None], object] = {}

    def encode(k: int, t: int | None):
        if (k, t) not in encoded:
            person = people[k]
            image = load_photo(person.reference) if t is None else reference_crop(frames[t], person.boxes[t])
            encoded[(k, t)] = encoders.faces.encode(image)
        return encoded[(k, t)]

    draws = []
    photos_only = all(person.reference is not None for person in people)
    for _ in range(1 if photos_only else config.reference_draws):  # photos only: every draw is the same
        chosen: list[int | None] = []
        identities = []
        for k, person in enumerate(people):
            if person.reference is not None:
                try:
                    identities.append(encode(k, None))
                except IngredientsError as exc:  # unreadable photo, or no face in it: skip the clip
                    raise SkipClip(f"{clip_id}: person {k}: {exc.message}") from exc
                chosen.append(None)
                continue
            candidates = person.seen if person.seen is not None else list(range(len(frames)))
            order = torch.randperm(len(candidates), generator=generator).tolist()
            for index in order:
                t = candidates[index]
                try:
                    identities.append(encode(k, t))
                except IngredientsError:
                    continue
                chosen.append(t)
                break
            else:
                raise SkipClip(f"{clip_id}: person {k}: the face encoder finds no face in any frame")
        draws.append(ReferenceDraw(chosen, identities))
    return draws


def prepare_clip(
    entry: ManifestEntry,
    config: PrepareConfig,
    geometry: ModelGeometry,
    encoders: Encoders,
    detector: DlibDetector | InsightfaceDetector | None,
    masker: SamMasker | None,
    out_dir: Path,
    key: str,
) -> dict:
    """Prepare one clip; returns its index row. Raises SkipClip when the clip is unusable."""
    from ingredients_model.faces import compose_identity_canvas

    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + zlib.crc32(entry.id.encode()))
    raw = read_frames(entry.video, geometry.frames, config.frame_stride, entry.start)
    x0, y0, cw, ch = center_crop_box(raw[0].shape[1], raw[0].shape[0], geometry.width / geometry.height)
    frames = [f[y0 : y0 + ch, x0 : x0 + cw] for f in raw]

    if entry.people is not None:
        people = people_from_manifest(entry, len(frames), config.frame_stride, (x0, y0))
    else:
        assert detector is not None
        threshold = config.link_threshold or detector.default_link_threshold
        people = people_from_tracks(
            link_faces([detector.detect(f) for f in frames], threshold), len(frames), config
        )
    if len(people) < config.min_people:
        raise SkipClip(f"{entry.id}: {len(people)} people found, need {config.min_people}")
    people = sorted(people[: config.max_people], key=lambda p: float(np.mean(p.boxes[:, 0] + p.boxes[:, 2])))
    boxes = np.stack([p.boxes for p in people], axis=1)  # [T, N, 4]

    draws = encode_reference_draws(people, frames, config, encoders, generator, entry.id)

    box_labels = [labels_from_scores(box_scores(b, ch, cw), 0.0) for b in boxes]
    if masker is not None:
        logits = masker.logits([Image.fromarray(f) for f in frames], boxes, config.sam_batch_frames)
        labels = torch.stack(
            [
                sam_labels(
                    frame_logits, config.mask_threshold, fallback if config.empty_mask_fallback else None
                )
                for frame_logits, fallback in zip(logits, box_labels, strict=True)
            ]
        )
    else:
        labels = torch.stack(box_labels)  # [T, H, W]
    grid = (geometry.latent_frames, geometry.token_height, geometry.token_width)
    routing = downsample_labels(labels, len(people), grid, config.mask_coverage, geometry.temporal_ratio)

    video = _resize(frames, geometry.width, geometry.height)
    latents_mean, latents_std = encoders.latent_distribution(video, generator)
    tensors = {
        "latents_mean": latents_mean,
        "latents_std": latents_std,
        "prompt_embeds": encoders.prompt(entry.caption),
        "routing_mask": routing.to(torch.int64).contiguous(),
    }
    for j, draw in enumerate(draws):
        canvas = compose_identity_canvas(
            [i.aligned_face for i in draw.identities], geometry.width, geometry.height
        )
        sigma = float(
            torch.exp(torch.randn((), generator=generator) * config.image_noise_std + config.image_noise_mean)
        )
        mean, std = encoders.latent_distribution(np.asarray(canvas)[None], generator, sigma)
        tensors[f"image_latents_mean.{j}"], tensors[f"image_latents_std.{j}"] = mean, std
        for k, ident in enumerate(draw.identities):
            tensors[f"id_cond.{j}.{k}"] = ident.id_cond.float().clone()  # a person's photo recurs in draws
            for s, hidden in enumerate(ident.id_vit_hidden):
                tensors[f"id_vit_hidden.{j}.{k}.{s}"] = hidden.float().clone()

    clip_dir = out_dir / "clips" / entry.id
    clip_dir.mkdir(parents=True, exist_ok=True)
    for k, ident in enumerate(draws[0].identities):
        ident.aligned_face.save(clip_dir / f"person{k}.png")
    label_preview(labels[0]).save(clip_dir / "mask.png")
    row = {
        "id": entry.id,
        "file": f"clips/{entry.id}.safetensors",
        "caption": entry.caption,
        "num_people": len(people),
        "frames": geometry.frames,
        "height": geometry.height,
        "width": geometry.width,
        "mask_source": "sam" if masker is not None else "box",
        "reference_draws": len(draws),
        "reference_frames": [draw.frames for draw in draws],
        "face_encoder": encoders.faces.fingerprint,
        "key": key,
    }
    target = out_dir / row["file"]
    partial = target.with_name(target.name + ".partial")
    save_file(tensors, str(partial), metadata={"caption": entry.caption})
    partial.replace(target)
    _write_json(out_dir / "clips" / f"{entry.id}.json", row)
    return row


def _cached_row(out_dir: Path, clip_id: str, key: str) -> dict | None:
    """The index row of an already prepared clip built with `key`, else None."""
    meta = out_dir / "clips" / f"{clip_id}.json"
    try:
        row = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return row if row.get("key") == key and (out_dir / row["file"]).is_file() else None


def _write_json(path: Path, data: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    partial.replace(path)


def run_prepare(config: PrepareConfig) -> list[dict]:
    """Prepare every manifest clip (this process's share under accelerate); returns the index rows."""
    from accelerate.utils import tqdm

    from ingredients_model.training.launch import process_state

    state = process_state()
    device = state.device if config.device == "auto" else torch.device(config.device)
    entries = read_manifest(config.manifest)
    out_dir = config.output_dir
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    encoders = Encoders(config, device)
    geometry = model_geometry(config, dict(encoders.vae.config))
    needs_detection = any(e.people is None for e in entries)
    detector = make_detector(config, device) if needs_detection else None
    masker = SamMasker(config.sam_dir, device) if config.masks == "sam" else None

    from ingredients_model.checkpoint import model_revision

    sources = f"{model_revision(config.model_dir)}:{encoders.faces.fingerprint}"
    keys = {entry.id: clip_key(entry, config, sources) for entry in entries}
    skipped = []
    mine = entries[state.process_index :: state.num_processes]
    for entry in tqdm(mine, desc="prepare", unit="clip", main_process_only=True):
        if not config.overwrite and _cached_row(out_dir, entry.id, keys[entry.id]) is not None:
            continue
        (out_dir / "clips" / f"{entry.id}.json").unlink(missing_ok=True)
        try:
            prepare_clip(entry, config, geometry, encoders, detector, masker, out_dir, keys[entry.id])
            log.info("prepared %s", entry.id)
        except SkipClip as exc:
            log.warning("skipped %s", exc)
            skipped.append({"id": entry.id, "reason": str(exc)})
    _write_json(out_dir / f"skipped.{state.process_index}.json", {"skipped": skipped})
    state.wait_for_everyone()
    rows = [row for e in entries if (row := _cached_row(out_dir, e.id, keys[e.id])) is not None]
    if state.is_main_process:
        index = out_dir / "index.jsonl"
        partial = index.with_name(index.name + ".partial")
        partial.write_text("".join(json.dumps(r) + "\n" for r in rows))
        partial.replace(index)
        _write_json(
            out_dir / "prepare.json",
            {"config": json.loads(config.model_dump_json()), "versions": _versions()},
        )
    state.wait_for_everyone()
    return rows


def _versions() -> dict:
    import diffusers
    import transformers

    import ingredients_model

    return {
        "ingredients_model": ingredients_model.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
