"""Photos → identity features for the Ingredients model, and the global identity canvas.

Two encoders share one interface (:class:`FaceEncoder`):

* :class:`ReleasedFaceEncoder` — the released face stack, loaded from ``<model>/face_encoder``:
  insightface antelopev2 (SCRFD detection + ``glintr100`` ArcFace, 512-d), facexlib alignment to a
  512 crop (retinaface_resnet50) with bisenet parsing, and EVA02-CLIP-L-14-336 (pooled 768-d,
  L2-normalised, plus 5 hidden states of ``[577, 1024]``). It mirrors diffusers'
  ``consisid_utils.process_face_embeddings`` (when SCRFD finds no face, ArcFace runs on the facexlib
  crop, as released). Needs the ``[gpu]`` extra (torchvision, facexlib, consisid_eva_clip), imported
  lazily; :data:`RELEASED_FACE_ENCODER_FILES` lists the weight files it reads.
* :class:`TinyFaceEncoder` — a small random encoder for tests and CPU smoke runs: real offline dlib
  detection and 5-point alignment, then tiny random torch nets with the same output structure.

Faces are numbered left to right (by box centre). ``face_index`` is 0-based in that order; ``None``
picks the largest face, as the released code does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from ingredients_model.errors import IngredientsError, MissingWeightsError
from ingredients_model.photos import resize_long_side

__all__ = [
    "RELEASED_FACE_ENCODER_FILES",
    "ArcFaceEmbedder",
    "FaceEncoder",
    "IdentityEmbedding",
    "NoFaceError",
    "ReleasedFaceEncoder",
    "TinyFaceEncoder",
    "compose_identity_canvas",
    "load_face_encoder",
    "missing_face_encoder_files",
    "write_tiny_face_encoder",
]

ENCODER_CODE_VERSION = "1"
"""Bumped whenever the encoding maths change (part of every fingerprint)."""

TINY_WEIGHTS = "tiny_face_encoder.safetensors"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # consisid_eva_clip OPENAI_DATASET_MEAN
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PARSING_BACKGROUND_LABELS = (0, 16, 18, 7, 8, 9, 14, 15)  # bisenet: background, cloth, hat, ears, neck, ...

RELEASED_FACE_ENCODER_FILES = (
    "models/antelopev2/scrfd_10g_bnkps.onnx",
    "models/antelopev2/glintr100.onnx",
    "EVA02_CLIP_L_336_psz14_s6B.pt",
    "detection_Resnet50_Final.pth",
    "parsing_bisenet.pth",
    "parsing_parsenet.pth",
)
"""Files of the released ``face_encoder/`` folder that the released encoder reads (facexlib's
``FaceRestoreHelper`` always loads parsenet besides the bisenet used for parsing)."""

_GPU_EXTRA_MODULES = ("insightface", "torchvision", "facexlib", "consisid_eva_clip")


@dataclass
class IdentityEmbedding:
    """One person's identity features, as the transformer consumes them."""

    id_cond: torch.Tensor
    """``[id_dim]`` float32; released: 1280 = ArcFace 512 ⊕ EVA-CLIP pooled 768 (L2-normalised)."""
    id_vit_hidden: list[torch.Tensor]
    """``num_scales`` tensors ``[tokens, vit_dim]``; released: 5 × ``[577, 1024]``."""
    aligned_face: Image.Image
    """RGB aligned face crop (released: 512x512, background whitened by face parsing)."""
    face_box: tuple[float, float, float, float] | None = field(default=None, compare=False)
    """(left, top, right, bottom) of the encoded face in the input image, when known."""


@runtime_checkable
class FaceEncoder(Protocol):
    """Anything that turns a photo into an :class:`IdentityEmbedding`."""

    fingerprint: str
    """Changes whenever the weights or the encoder code version change."""
    arcface_dim: int
    """How many leading values of ``id_cond`` are the ArcFace part (released: 512)."""

    def encode(self, image: Image.Image, face_index: int | None = None) -> IdentityEmbedding:
        """Encode one face of ``image`` (``face_index``: 0-based, left to right; ``None``: the largest)."""
        ...


class NoFaceError(IngredientsError):
    """No (or not the requested) face was found in an image."""


def _pick_face(boxes: Sequence[tuple[float, float, float, float]], face_index: int | None) -> int:
    """Index into ``boxes`` of the requested face: ``face_index``-th from the left, or the largest."""
    if not boxes:
        raise NoFaceError("no face found in the image", "use a clearer, frontal photo of the face")
    order = sorted(range(len(boxes)), key=lambda i: ((boxes[i][0] + boxes[i][2]) / 2, boxes[i][1]))
    if face_index is None:
        return max(order, key=lambda i: (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))
    if not 0 <= face_index < len(boxes):
        raise NoFaceError(
            f"face {face_index + 1} requested but {len(boxes)} face(s) found",
            f"choose a face between 1 and {len(boxes)} (numbered left to right)",
        )
    return order[face_index]


# --------------------------------------------------------------------------------------------- canvas


def compose_identity_canvas(faces: Sequence[Image.Image], width: int = 720, height: int = 480) -> Image.Image:
    """The "global" I2V conditioning image: the aligned faces on white, in one row, left to right.

    Each face becomes a square of side ``min(width // n, height)``; the row is centred. For the
    released 720x480 canvas: one face 480x480 in the middle, two faces 360x360 side by side at
    y=60 (the released layout), three 240x240, four 180x180.
    """
    if not faces:
        raise IngredientsError("an identity canvas needs at least one face")
    n = len(faces)
    side = min(width // n, height)
    if side < 1:
        raise IngredientsError(f"{n} faces do not fit on a {width}x{height} canvas")
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    x0, y = (width - n * side) // 2, (height - side) // 2
    for i, face in enumerate(faces):
        tile = face.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        canvas.paste(tile, (x0 + i * side, y))
    return canvas


# ----------------------------------------------------------------------------------------- tiny encoder


class _TinyNets(torch.nn.Module):
    """Random stand-ins for ArcFace / EVA-CLIP with the released output structure."""

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        pixels = 3 * cfg["input_size"] ** 2
        self.trunk = torch.nn.Linear(pixels, cfg["hidden"])
        self.arcface = torch.nn.Linear(cfg["hidden"], cfg["arcface_dim"])
        self.clip = torch.nn.Linear(cfg["hidden"], cfg["id_dim"] - cfg["arcface_dim"])
        self.vit = torch.nn.Linear(cfg["hidden"], cfg["num_scales"] * cfg["vit_dim"])
        self.vit_pos = torch.nn.Parameter(
            torch.randn(cfg["num_scales"], cfg["vit_tokens"], cfg["vit_dim"]) * 0.5
        )
        self.num_scales, self.vit_dim = cfg["num_scales"], cfg["vit_dim"]

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = torch.nn.functional.gelu(self.trunk(pixels.flatten(1)))
        arc = torch.nn.functional.normalize(self.arcface(h), dim=-1)
        clip = torch.nn.functional.normalize(self.clip(h), dim=-1)
        vit = torch.tanh(self.vit_pos[None] + self.vit(h).view(-1, self.num_scales, 1, self.vit_dim))
        return arc, clip, vit


def write_tiny_face_encoder(
    folder: Path, *, id_dim: int, vit_dim: int, vit_tokens: int, num_scales: int, seed: int = 0
) -> None:
    """Write a small random face encoder (config.json + safetensors) for :func:`load_face_encoder`.

    The first ``id_dim // 2`` values of ``id_cond`` play ArcFace's part, the rest EVA-CLIP's pooled
    feature; both are L2-normalised. Detection and alignment are dlib's real offline models.
    """
    from safetensors.torch import save_file

    if id_dim < 2 or min(vit_dim, vit_tokens, num_scales) < 1:
        raise ValueError("id_dim must be >= 2 and vit_dim, vit_tokens, num_scales >= 1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {
        "type": "tiny_random",
        "id_dim": id_dim,
        "arcface_dim": id_dim // 2,
        "vit_dim": vit_dim,
        "vit_tokens": vit_tokens,
        "num_scales": num_scales,
        "hidden": 32,
        "input_size": 32,
        "face_size": 512,
        "seed": seed,
    }
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        nets = _TinyNets(cfg)
    finally:
        torch.random.set_rng_state(generator_state)
    tensors = {k: v.detach().contiguous() for k, v in nets.state_dict().items()}
    save_file(tensors, str(folder / TINY_WEIGHTS))
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


class TinyFaceEncoder:
    """Small random encoder with the released interface: dlib detection + alignment, random nets."""

    def __init__(self, folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        from safetensors.torch import load_file

        folder = Path(folder)
        self.config: dict[str, Any] = json.loads((folder / "config.json").read_text())
        weights = folder / TINY_WEIGHTS
        if not weights.is_file():
            raise IngredientsError(
                f"tiny face encoder weights missing: {weights}",
                "rewrite the folder with write_tiny_face_encoder",
            )
        self.device, self.dtype = torch.device(device), dtype
        self.arcface_dim = int(self.config["arcface_dim"])
        self.nets = _TinyNets(self.config)
        self.nets.load_state_dict(load_file(str(weights)))
        self.nets.eval().to(self.device, dtype)
        digest = hashlib.sha256()
        digest.update(f"tiny_random:{ENCODER_CODE_VERSION}:".encode())
        digest.update(json.dumps(self.config, sort_keys=True).encode())
        digest.update(weights.read_bytes())
        self.fingerprint = "tiny-" + digest.hexdigest()[:16]

    def encode(self, image: Image.Image, face_index: int | None = None) -> IdentityEmbedding:
        from ingredients_model.face_tools import align_face, detect_faces

        image = resize_long_side(image.convert("RGB"))
        boxes = detect_faces(image)
        box = boxes[_pick_face([(b.left, b.top, b.right, b.bottom) for b in boxes], face_index)]
        aligned = align_face(image, box, size=self.config["face_size"])
        size = self.config["input_size"]
        pixels = np.asarray(aligned.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
        x = (
            torch.from_numpy(pixels).permute(2, 0, 1) - torch.tensor(CLIP_MEAN)[:, None, None]
        ) / torch.tensor(CLIP_STD)[:, None, None]
        with torch.no_grad():
            arc, clip, vit = self.nets(x[None].to(self.device, self.dtype))
        return IdentityEmbedding(
            id_cond=torch.cat([arc[0], clip[0]]).float().cpu(),
            id_vit_hidden=[v.float().cpu() for v in vit[0]],
            aligned_face=aligned,
            face_box=(box.left, box.top, box.right, box.bottom),
        )


# ------------------------------------------------------------------------------------- released encoder


def _onnx_runtime(device: torch.device) -> tuple[list[str], int]:
    """onnxruntime providers and insightface ``ctx_id`` for a torch device."""
    if device.type == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], device.index or 0
    return ["CPUExecutionProvider"], -1


class ArcFaceEmbedder:
    """The released ArcFace (antelopev2 ``glintr100.onnx``) through ``insightface.model_zoo``.

    Needs only insightface + onnxruntime (no torchvision), so it can be exercised on any machine.
    """

    def __init__(self, onnx_path: Path, device: str | torch.device = "cpu"):
        import insightface

        providers, ctx_id = _onnx_runtime(torch.device(device))
        self.model = insightface.model_zoo.get_model(str(onnx_path), providers=providers)
        if self.model is None or not hasattr(self.model, "get_feat"):
            raise MissingWeightsError(
                f"{onnx_path} is not an ArcFace recognition model", _model_dir(onnx_path)
            )
        self.model.prepare(ctx_id=ctx_id)

    def embed_keypoints(self, image_bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """Embedding of the face at 5 keypoints (norm_crop to 112 px), as ``FaceAnalysis.get``."""
        from insightface.utils import face_align

        crop = face_align.norm_crop(image_bgr, landmark=np.asarray(kps), image_size=self.model.input_size[0])
        return self.embed_crop(crop)

    def embed_crop(self, face_bgr: np.ndarray) -> np.ndarray:
        """Embedding of an already aligned BGR face crop (resized to the model input): ``[512]`` float32."""
        return np.asarray(self.model.get_feat(face_bgr), dtype=np.float32).reshape(-1)


def missing_face_encoder_files(folder: Path) -> list[str]:
    """Released ``face_encoder/`` files absent from ``folder`` (paths relative to it)."""
    return [name for name in RELEASED_FACE_ENCODER_FILES if not (Path(folder) / name).is_file()]


def _model_dir(folder: Path) -> Path:
    """The model folder a ``face_encoder/`` folder belongs to."""
    return Path(folder).parent if Path(folder).name == "face_encoder" else Path(folder)


def _require_released(folder: Path) -> None:
    files = missing_face_encoder_files(folder)
    modules = [m for m in _GPU_EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if not files and not modules:
        return
    problems = [f"missing file {Path(folder) / f}" for f in files]
    problems += [f"missing Python package {m}" for m in modules]
    message = "the released face encoder cannot load:\n  " + "\n  ".join(problems)
    install = f"install {', '.join(modules)} (the GPU extra, on a CUDA machine)" if modules else None
    if files:
        raise MissingWeightsError(message, _model_dir(folder), also=install)
    raise IngredientsError(message, install)


def _partial_file_hash(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's size, first and last MiB (fast on multi-GB weights)."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(chunk))
        handle.seek(max(0, path.stat().st_size - chunk))
        digest.update(handle.read(chunk))
    return digest.hexdigest()


class ReleasedFaceEncoder:
    """The released face stack (see module docstring). ``encode`` mirrors ``process_face_embeddings``."""

    def __init__(self, folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        folder = Path(folder)
        _require_released(folder)
        from consisid_eva_clip import create_model_and_transforms
        from facexlib.parsing import init_parsing_model
        from facexlib.utils.face_restoration_helper import FaceRestoreHelper
        from insightface.model_zoo import get_model

        self.device, self.dtype = torch.device(device), dtype
        self.arcface_dim = 512
        providers, ctx_id = _onnx_runtime(self.device)
        self.detector = get_model(str(folder / RELEASED_FACE_ENCODER_FILES[0]), providers=providers)
        self.detector.prepare(ctx_id=ctx_id, input_size=(640, 640), det_thresh=0.5)
        self.arcface = ArcFaceEmbedder(folder / RELEASED_FACE_ENCODER_FILES[1], self.device)
        self.helper = FaceRestoreHelper(
            upscale_factor=1,
            face_size=512,
            crop_ratio=(1, 1),
            det_model="retinaface_resnet50",
            save_ext="png",
            device=self.device,
            model_rootpath=str(folder),
        )
        self.helper.face_parse = init_parsing_model(
            model_name="bisenet", device=self.device, model_rootpath=str(folder)
        )
        self.helper.face_det.eval()
        self.helper.face_parse.eval()
        model, _, _ = create_model_and_transforms(
            "EVA02-CLIP-L-14-336", str(folder / "EVA02_CLIP_L_336_psz14_s6B.pt"), force_custom_clip=True
        )
        self.clip = model.visual.eval().to(self.device, dtype=dtype)
        mean = getattr(self.clip, "image_mean", CLIP_MEAN)
        std = getattr(self.clip, "image_std", CLIP_STD)
        self.clip_mean = tuple(mean) if isinstance(mean, list | tuple) else (mean,) * 3
        self.clip_std = tuple(std) if isinstance(std, list | tuple) else (std,) * 3
        digest = hashlib.sha256(f"released:{ENCODER_CODE_VERSION}:".encode())
        for name in RELEASED_FACE_ENCODER_FILES:
            digest.update(f"{name}:{_partial_file_hash(folder / name)}".encode())
        self.fingerprint = "released-" + digest.hexdigest()[:16]

    def _arcface(
        self, bgr: np.ndarray, face_index: int | None
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """ArcFace embedding and box of the chosen face via SCRFD; (None, None) when SCRFD finds none."""
        bboxes, kpss = self.detector.detect(bgr, max_num=0, metric="default")
        if bboxes is None or len(bboxes) == 0:  # released fallback: facexlib finds and aligns the face
            return None, None
        i = _pick_face([tuple(b[:4]) for b in bboxes], face_index)
        return self.arcface.embed_keypoints(bgr, kpss[i]), np.asarray(bboxes[i][:4])

    def _align(self, bgr: np.ndarray, box: np.ndarray | None, face_index: int | None) -> np.ndarray:
        """facexlib 512 alignment of the face matching ``box`` (else the requested face, else the centre
        face as released). Returns the BGR crop."""
        from ingredients_model.face_tools import FaceBox

        helper = self.helper
        helper.clean_all()
        helper.read_image(bgr)
        centre = box is None and face_index is None
        helper.get_face_landmarks_5(only_center_face=centre)
        if not helper.all_landmarks_5:
            raise NoFaceError("facexlib found no face to align", "use a clearer, frontal photo of the face")
        if not centre:  # helper.det_faces: one [x1, y1, x2, y2, score] per face
            dets = [tuple(float(v) for v in d[:4]) for d in helper.det_faces]
            if box is not None:  # the facexlib face overlapping SCRFD's most (nearest centre on ties)
                target = FaceBox(*(int(v) for v in box))
                tx, ty = target.center

                def overlap(j: int) -> tuple[float, float]:
                    other = FaceBox(*(int(v) for v in dets[j]))
                    ox, oy = other.center
                    return target.iou(other), -((ox - tx) ** 2 + (oy - ty) ** 2)

                chosen = max(range(len(dets)), key=overlap)
            else:
                chosen = _pick_face(dets, face_index)
            helper.all_landmarks_5 = [helper.all_landmarks_5[chosen]]
        helper.align_warp_face()
        return helper.cropped_faces[0]

    def encode(self, image: Image.Image, face_index: int | None = None) -> IdentityEmbedding:
        import cv2
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.functional import normalize, resize

        rgb = np.asarray(resize_long_side(image.convert("RGB")))
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        arc, box = self._arcface(bgr, face_index)
        align_face = self._align(bgr, box, face_index)  # BGR 512x512
        if arc is None:  # released fallback: ArcFace on the facexlib crop
            arc = self.arcface.embed_crop(align_face)
        with torch.no_grad():
            x = torch.from_numpy(
                cv2.cvtColor(align_face, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).copy()
            ).float()
            x = (x[None] / 255.0).to(self.device)
            parsing = self.helper.face_parse(normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))[0]
            labels = parsing.argmax(dim=1, keepdim=True)
            background = sum(labels == i for i in PARSING_BACKGROUND_LABELS).bool()
            white = torch.ones_like(x)
            gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).repeat(1, 3, 1, 1)
            features = torch.where(background, white, gray)
            face_rgb = torch.where(background, white, x)
            features = resize(features, self.clip.image_size, InterpolationMode.BICUBIC)
            features = normalize(features, self.clip_mean, self.clip_std)
            pooled, hidden = self.clip(
                features.to(self.dtype), return_all_features=False, return_hidden=True, shuffle=False
            )
            pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
        id_cond = torch.cat([torch.from_numpy(arc).float(), pooled[0].cpu()])
        aligned = (face_rgb[0].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
        return IdentityEmbedding(
            id_cond=id_cond,
            id_vit_hidden=[h[0].float().cpu() for h in hidden],
            aligned_face=Image.fromarray(aligned),
            face_box=tuple(float(v) for v in box) if box is not None else None,
        )


# ------------------------------------------------------------------------------------------- dispatch


def load_face_encoder(
    folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> FaceEncoder:
    """Load ``<model>/face_encoder``: the tiny random encoder if its ``config.json`` says
    ``{"type": "tiny_random"}``, otherwise the released encoder (raises :class:`IngredientsError`
    naming every missing file / package and the command that fixes it)."""
    folder = Path(folder)
    config = folder / "config.json"
    if config.is_file():
        try:
            kind = json.loads(config.read_text()).get("type")
        except (json.JSONDecodeError, AttributeError) as err:
            raise MissingWeightsError(
                f"unreadable face encoder config {config}: {err}", _model_dir(folder)
            ) from err
        if kind == "tiny_random":
            return TinyFaceEncoder(folder, device=device, dtype=dtype)
        raise IngredientsError(f"unknown face encoder type {kind!r} in {config}", "expected 'tiny_random'")
    return ReleasedFaceEncoder(folder, device=device, dtype=dtype)
