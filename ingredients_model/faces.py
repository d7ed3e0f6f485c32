"""Photos → identity features for the Ingredients model, and the global identity canvas.

Two encoders share one interface (:class:`FaceEncoder`) and one preprocessing
(:mod:`ingredients_model.face_preprocessing`: the released steps from the detector's output onwards):

* :class:`ReleasedFaceEncoder` — the released face stack, loaded from ``<model>/face_encoder``:
  facexlib's RetinaFace (resnet50) finds the faces, the chosen one is aligned to facexlib's 512 px
  template, then antelopev2 ``glintr100`` ArcFace (512-d, through insightface/onnxruntime) and
  EVA02-CLIP-L-14-336 (pooled 768-d, L2-normalised, plus 5 hidden states of ``[577, 1024]``) encode the
  colour crop, as the released ``process_face_embeddings_split`` does. Needs the ``[gpu]`` extra
  (torchvision, facexlib, consisid_eva_clip), imported lazily; :data:`RELEASED_FACE_ENCODER_FILES` lists
  the weight files it reads.
* :class:`TinyFaceEncoder` — a small random encoder for tests and CPU smoke runs: dlib's real offline
  detection and landmarks, the released alignment, then tiny random torch nets with the released output
  structure.

Choosing the face (``encode(image, face_index=..., face_box=...)``): by default the detector's
highest-scoring face, as released; ``face_index`` numbers the faces left to right (0-based); ``face_box``
picks the face overlapping a box chosen elsewhere (e.g. by another detector on the same photo).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from ingredients_model.errors import IngredientsError, MissingWeightsError
from ingredients_model.face_preprocessing import (
    CLIP_MEAN,
    CLIP_STD,
    DETECTION_THRESHOLD,
    AlignedFace,
    Box,
    NoFaceError,
    RowDetector,
    arcface_input,
    clip_input,
    detect_and_align,
)
from ingredients_model.photos import resize_long_side, to_rgb

__all__ = [
    "ARCFACE_FILE",
    "EVA_CLIP_FILE",
    "RELEASED_FACE_ENCODER_FILES",
    "RETINAFACE_FILE",
    "SCRFD_FILE",
    "ArcFaceEmbedder",
    "FaceEncoder",
    "IdentityEmbedding",
    "NoFaceError",
    "ReleasedFaceEncoder",
    "ReleasedFaceInputs",
    "TinyFaceEncoder",
    "compose_identity_canvas",
    "insightface_ctx_id",
    "load_face_encoder",
    "missing_face_encoder_files",
    "onnx_providers",
    "write_tiny_face_encoder",
]

ENCODER_CODE_VERSION = "2"
"""Bumped whenever the encoding maths change (part of every fingerprint). 2: the released
``process_face_embeddings_split`` (colour crop for EVA-CLIP, ArcFace on the 512 crop, top-score face)."""

TINY_WEIGHTS = "tiny_face_encoder.safetensors"

ARCFACE_FILE = "models/antelopev2/glintr100.onnx"
EVA_CLIP_FILE = "EVA02_CLIP_L_336_psz14_s6B.pt"
RETINAFACE_FILE = "detection_Resnet50_Final.pth"
SCRFD_FILE = "models/antelopev2/scrfd_10g_bnkps.onnx"
"""insightface's SCRFD detector: in the released folder, used by training data preparation only."""

RELEASED_FACE_ENCODER_FILES = (ARCFACE_FILE, EVA_CLIP_FILE, RETINAFACE_FILE)
"""Files of the released ``face_encoder/`` folder that :class:`ReleasedFaceEncoder` reads. (The released
inference also loads SCRFD and a BiSeNet parser, but never uses their results.)"""

_GPU_EXTRA_MODULES = ("insightface", "torchvision", "facexlib", "consisid_eva_clip")


@dataclass
class IdentityEmbedding:
    """One person's identity features, as the transformer consumes them."""

    id_cond: torch.Tensor
    """``[id_dim]`` float32; released: 1280 = ArcFace 512 (not normalised) ⊕ EVA-CLIP pooled 768
    (L2-normalised)."""
    id_vit_hidden: list[torch.Tensor]
    """``num_scales`` tensors ``[tokens, vit_dim]``; released: 5 × ``[577, 1024]``."""
    aligned_face: Image.Image
    """RGB aligned face crop, 512x512, in colour with its surroundings (what the identity canvas shows)."""
    face_box: tuple[float, float, float, float] | None = field(default=None, compare=False)
    """(left, top, right, bottom) of the encoded face in the input image, when known."""


@runtime_checkable
class FaceEncoder(Protocol):
    """Anything that turns a photo into an :class:`IdentityEmbedding`."""

    fingerprint: str
    """Changes whenever the weights or the encoder code version change."""
    arcface_dim: int
    """How many leading values of ``id_cond`` are the ArcFace part (released: 512)."""

    def encode(
        self, image: Image.Image, face_index: int | None = None, face_box: Box | None = None
    ) -> IdentityEmbedding:
        """Encode one face of ``image``: the highest-scoring one, the ``face_index``-th from the left
        (0-based), or the one overlapping ``face_box`` (input-image pixels) most."""
        ...


def _photo_bgr(image: Image.Image) -> tuple[np.ndarray, float, float]:
    """The photo as the released detector sees it (RGB, ≤ 1024 px long side, then BGR) and the scale
    factors (x, y) from the input image to it."""
    import cv2

    rgb = to_rgb(image)
    photo = resize_long_side(rgb)
    sx, sy = photo.width / rgb.width, photo.height / rgb.height
    return cv2.cvtColor(np.asarray(photo), cv2.COLOR_RGB2BGR), sx, sy


def _detect_and_align(
    image: Image.Image, detect: RowDetector, face_index: int | None, face_box: Box | None
) -> tuple[AlignedFace, Box]:
    """Prepare the photo, choose and align its face; also the chosen box in input-image pixels."""
    bgr, sx, sy = _photo_bgr(image)
    if face_box is not None:
        face_box = (face_box[0] * sx, face_box[1] * sy, face_box[2] * sx, face_box[3] * sy)
    aligned = detect_and_align(bgr, detect, face_index, face_box)
    x0, y0, x1, y1 = aligned.detection.box
    return aligned, (x0 / sx, y0 / sy, x1 / sx, y1 / sy)


def _rgb_image(bgr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))


# --------------------------------------------------------------------------------------------- canvas


def compose_identity_canvas(faces: Sequence[Image.Image], width: int = 720, height: int = 480) -> Image.Image:
    """The "global" I2V conditioning image: the aligned faces (as they are, surroundings included) on
    white, in one row, left to right.

    Each face becomes a bicubic-resized square of side ``min(width // n, height)``; the row is centred.
    For the released 720x480 canvas with two people this is the released layout exactly (360x360 faces
    at x = 0 and 360, y = 60); one face is 480x480 in the middle, three 240x240, four 180x180.
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
    feature; both are L2-normalised. Detection and landmarks are dlib's real offline models.
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
    """Small random encoder with the released interface and preprocessing: dlib detection and landmarks,
    the released alignment, random nets on the aligned crop (resized to the config's ``input_size``)."""

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

    def encode(
        self, image: Image.Image, face_index: int | None = None, face_box: Box | None = None
    ) -> IdentityEmbedding:
        from ingredients_model.face_tools import detector_rows

        aligned, box = _detect_and_align(image, detector_rows, face_index, face_box)
        face = _rgb_image(aligned.crop_bgr)
        size = self.config["input_size"]
        pixels = np.asarray(face.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
        x = (
            torch.from_numpy(pixels).permute(2, 0, 1) - torch.tensor(CLIP_MEAN)[:, None, None]
        ) / torch.tensor(CLIP_STD)[:, None, None]
        with torch.no_grad():
            arc, clip, vit = self.nets(x[None].to(self.device, self.dtype))
        return IdentityEmbedding(
            id_cond=torch.cat([arc[0], clip[0]]).float().cpu(),
            id_vit_hidden=[v.float().cpu() for v in vit[0]],
            aligned_face=face,
            face_box=box,
        )


# ------------------------------------------------------------------------------------- released encoder


def onnx_providers(device: str | torch.device) -> list[Any]:
    """onnxruntime providers for a torch device: on ``cuda:K`` the CUDA provider pinned to GPU K
    (``device_id``, so each process's sessions run on its own GPU) when this onnxruntime build has it,
    then the CPU."""
    import onnxruntime

    device = torch.device(device)
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": insightface_ctx_id(device)}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def insightface_ctx_id(device: str | torch.device) -> int:
    """insightface's ``prepare(ctx_id=...)`` for a torch device: the GPU index, or -1 for the CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return -1
    return device.index if device.index is not None else torch.cuda.current_device()


class ArcFaceEmbedder:
    """An insightface ArcFace ONNX model (released: antelopev2 ``glintr100.onnx``), through
    ``insightface.model_zoo`` and onnxruntime (no torchvision needed)."""

    def __init__(self, onnx_path: Path, device: str | torch.device = "cpu"):
        import insightface

        self.model = insightface.model_zoo.get_model(str(onnx_path), providers=onnx_providers(device))
        if self.model is None or not hasattr(self.model, "get_feat"):
            raise MissingWeightsError(
                f"{onnx_path} is not an ArcFace recognition model", _model_dir(onnx_path)
            )
        self.model.prepare(ctx_id=insightface_ctx_id(device))
        self.input_size: tuple[int, int] = tuple(self.model.input_size)
        self.input_mean, self.input_std = float(self.model.input_mean), float(self.model.input_std)

    def input_blob(self, face_bgr: np.ndarray) -> np.ndarray:
        """The model's input for a BGR face crop of any size (see :func:`arcface_input`)."""
        return arcface_input(face_bgr, self.input_size, self.input_mean, self.input_std)

    def embed_blob(self, blob: np.ndarray) -> np.ndarray:
        """Embedding ``[512]`` float32 (not normalised) of one input blob."""
        out = self.model.session.run(self.model.output_names, {self.model.input_name: blob})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def embed_crop(self, face_bgr: np.ndarray) -> np.ndarray:
        """Embedding of a BGR face crop, resized to the model's input (insightface ``get_feat``)."""
        return self.embed_blob(self.input_blob(face_bgr))

    def embed_keypoints(self, image_bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """Embedding of the face at 5 keypoints (``norm_crop`` to the input size), as ``FaceAnalysis.get``."""
        from insightface.utils import face_align

        crop = face_align.norm_crop(image_bgr, landmark=np.asarray(kps), image_size=self.input_size[0])
        return self.embed_crop(crop)


def missing_face_encoder_files(folder: Path) -> list[str]:
    """Released ``face_encoder/`` files absent from ``folder`` (paths relative to it)."""
    return [name for name in RELEASED_FACE_ENCODER_FILES if not (Path(folder) / name).is_file()]


def _model_dir(folder: Path) -> Path:
    """The model folder a ``face_encoder/`` folder belongs to."""
    return Path(folder).parent if Path(folder).name == "face_encoder" else Path(folder)


class _UnsafeLoadProbe:
    """Pickled by :func:`torch_load_is_safe`: a plain ``torch.load`` must refuse it."""


def torch_load_is_safe() -> bool:
    """Whether a plain ``torch.load(f)`` refuses arbitrary pickled objects (weights-only by default:
    torch >= 2.6 without ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``). facexlib and consisid_eva_clip load the
    released ``.pth``/``.pt`` weights with plain ``torch.load``."""
    buffer = io.BytesIO()
    torch.save(_UnsafeLoadProbe(), buffer)
    buffer.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch < 2.6 warns about its unsafe default
            torch.load(buffer)
    except pickle.UnpicklingError:
        return True
    return False


def _require_released(folder: Path) -> None:
    files = missing_face_encoder_files(folder)
    modules = [m for m in _GPU_EXTRA_MODULES if importlib.util.find_spec(m) is None]
    unsafe = not torch_load_is_safe()
    if not files and not modules and not unsafe:
        return
    problems = [f"missing file {Path(folder) / f}" for f in files]
    problems += [f"missing Python package {m}" for m in modules]
    advice = [f"install {', '.join(modules)} (the GPU extra, on a CUDA machine)"] if modules else []
    if unsafe:
        problems.append(f"torch {torch.__version__} would unpickle the .pth/.pt weights unrestricted")
        advice.append("use torch >= 2.6 (weights-only loading) and unset TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    message = "the released face encoder cannot load:\n  " + "\n  ".join(problems)
    also = "; ".join(advice) or None
    if files:
        raise MissingWeightsError(message, _model_dir(folder), also=also)
    raise IngredientsError(message, also)


def _partial_file_hash(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's size, first and last MiB (fast on multi-GB weights)."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(chunk))
        handle.seek(max(0, path.stat().st_size - chunk))
        digest.update(handle.read(chunk))
    return digest.hexdigest()


@dataclass
class ReleasedFaceInputs:
    """Everything the released networks receive for one photo (see :meth:`ReleasedFaceEncoder.prepare`)."""

    aligned: AlignedFace
    face_box: Box
    """The chosen face in input-image pixels."""
    arcface_blob: np.ndarray
    """ArcFace input ``[1, 3, 112, 112]`` float32."""
    clip_pixels: torch.Tensor
    """EVA-CLIP input ``[1, 3, 336, 336]`` float32 on the encoder's device."""


class ReleasedFaceEncoder:
    """The released face stack (see the module docstring); :meth:`from_folder` loads it.

    The networks are passed in: ``detector`` (BGR photo → RetinaFace rows, see
    :data:`~ingredients_model.face_preprocessing.RowDetector`), ``arcface`` and ``clip`` (EVA-CLIP's visual
    tower: ``clip(x, return_all_features=False, return_hidden=True, shuffle=False)`` → pooled, hidden
    states; ``image_size``, ``image_mean`` and ``image_std`` attributes as consisid_eva_clip sets them).
    """

    arcface_dim = 512

    def __init__(
        self,
        detector: RowDetector,
        arcface: ArcFaceEmbedder,
        clip: torch.nn.Module,
        fingerprint: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.detector, self.arcface, self.clip = detector, arcface, clip
        self.fingerprint = fingerprint
        self.device, self.dtype = torch.device(device), dtype
        size = clip.image_size
        self.clip_size = int(size[0] if isinstance(size, list | tuple) else size)
        mean = getattr(clip, "image_mean", CLIP_MEAN)
        std = getattr(clip, "image_std", CLIP_STD)
        self.clip_mean = tuple(mean) if isinstance(mean, list | tuple) else (mean,) * 3
        self.clip_std = tuple(std) if isinstance(std, list | tuple) else (std,) * 3

    @classmethod
    def from_folder(
        cls, folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> ReleasedFaceEncoder:
        """Load ``<model>/face_encoder`` (raises :class:`IngredientsError` naming every missing file or
        package, and refuses a torch that would unpickle the weights unrestricted)."""
        folder = Path(folder)
        _require_released(folder)
        from consisid_eva_clip import create_model_and_transforms
        from facexlib.detection import init_detection_model

        device = torch.device(device)
        retinaface = init_detection_model(
            "retinaface_resnet50", half=False, device=device, model_rootpath=str(folder)
        )

        def detect(photo_bgr: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return retinaface.detect_faces(photo_bgr, DETECTION_THRESHOLD)

        model, _, _ = create_model_and_transforms(
            "EVA02-CLIP-L-14-336", str(folder / EVA_CLIP_FILE), force_custom_clip=True
        )
        clip = model.visual.eval().to(device, dtype=dtype)
        digest = hashlib.sha256(f"released:{ENCODER_CODE_VERSION}:".encode())
        for name in RELEASED_FACE_ENCODER_FILES:
            digest.update(f"{name}:{_partial_file_hash(folder / name)}".encode())
        return cls(
            detect,
            ArcFaceEmbedder(folder / ARCFACE_FILE, device),
            clip,
            "released-" + digest.hexdigest()[:16],
            device=device,
            dtype=dtype,
        )

    def prepare(
        self, image: Image.Image, face_index: int | None = None, face_box: Box | None = None
    ) -> ReleasedFaceInputs:
        """Detect, choose and align the face, and build the ArcFace and EVA-CLIP inputs."""
        aligned, box = _detect_and_align(image, self.detector, face_index, face_box)
        return ReleasedFaceInputs(
            aligned=aligned,
            face_box=box,
            arcface_blob=self.arcface.input_blob(aligned.crop_bgr),
            clip_pixels=clip_input(
                aligned.crop_bgr, self.clip_size, self.clip_mean, self.clip_std, self.device
            ),
        )

    def encode(
        self, image: Image.Image, face_index: int | None = None, face_box: Box | None = None
    ) -> IdentityEmbedding:
        inputs = self.prepare(image, face_index, face_box)
        arc = torch.from_numpy(self.arcface.embed_blob(inputs.arcface_blob))
        with torch.no_grad():
            pooled, hidden = self.clip(
                inputs.clip_pixels.to(self.dtype),
                return_all_features=False,
                return_hidden=True,
                shuffle=False,
            )
            pooled = torch.div(pooled, torch.norm(pooled, 2, 1, True))  # in the model's dtype, as released
        return IdentityEmbedding(
            id_cond=torch.cat([arc.float(), pooled[0].float().cpu()]),
            id_vit_hidden=[h[0].float().cpu() for h in hidden],
            aligned_face=_rgb_image(inputs.aligned.crop_bgr),
            face_box=inputs.face_box,
        )


# ------------------------------------------------------------------------------------------- dispatch


def load_face_encoder(
    folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> FaceEncoder:
    """Load ``<model>/face_encoder``: the tiny random encoder if its ``config.json`` says
    ``{"type": "tiny_random"}``, otherwise the released encoder. Raises :class:`IngredientsError` naming
    every missing file / package and the fix, and :class:`MissingWeightsError` ("cannot load") when a
    file is there but does not load (damaged, cut short, of another model)."""
    folder = Path(folder)
    config = folder / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError) as err:
            raise MissingWeightsError(
                f"unreadable face encoder config {config}: {type(err).__name__}: {err}", _model_dir(folder)
            ) from err
        kind = data.get("type") if isinstance(data, dict) else data
        if kind != "tiny_random":
            raise IngredientsError(
                f"unknown face encoder type {kind!r} in {config}", "expected 'tiny_random'"
            )
        build = TinyFaceEncoder
    else:
        build = ReleasedFaceEncoder.from_folder
    try:
        return build(folder, device=device, dtype=dtype)
    except (IngredientsError, MemoryError):
        raise
    except Exception as err:  # whatever the libraries raise, the folder's files do not load
        raise MissingWeightsError(
            f"Cannot load the face encoder in {folder} (a file is damaged or from another model): "
            f"{type(err).__name__}: {err}",
            _model_dir(folder),
        ) from err
