"""``protocol: released``: the public Ingredients metric scripts' rules, reproduced one by one.

The scripts are ``metric/face_sim_fid.py`` and ``metric/clip_score.py`` of GitHub ``feizc/Ingredients``; the
paper's Table 1 (Face Sim 77.1 %, CLIPScore 26.7, FID 106.3) comes from them. Per video:

- **Face model**: insightface's default ``FaceAnalysis`` pack **buffalo_l** (SCRFD ``det_10g.onnx`` +
  ArcFace ``w600k_r50.onnx``) prepared at detector size **320**. Only detection and recognition feed the
  numbers (the pack's landmark and attribute models do not), so only those two are loaded.
- **References**: one photo per person; the largest face (box area) is taken. When none is found the
  photo is padded by a quarter of its size on every side with grey 128 and searched again (ConsisID's
  ``pad_np_bgr_image``; the script calls it without importing it, so there it would stop with a
  ``NameError``); the 5 keypoints are shifted back and the face is aligned on the unpadded photo.
  Photos are read with ``Image.open(...).convert("RGB")`` (no EXIF rotation).
- **Frames for Face Sim and FID**: 24, at ``np.linspace(0, total - 1, 24, dtype=int)`` (truncated, repeats
  kept when the video is shorter). **Frames for CLIPScore**: 24, at ``int(i * total / 24)``.
- **Faces per frame**: the **2 largest** detections (by box area, stable sort).
- **Face Sim** of a frame: the **maximum cosine** over all (reference, face) pairs of the raw ArcFace
  embeddings; the video's score is the mean over frames, **not clamped**.
- **"FID"** of a frame: each aligned face (insightface ``norm_crop`` at 224, BGR → RGB) is resized to
  299 × 299 (PIL bilinear, torchvision ``Resize`` on a PIL image) and scaled to 0..1 (``ToTensor``, no
  normalisation), then embedded with torchvision's ImageNet Inception-v3 (``fc = Identity``, 2048-d,
  ``transform_input=True`` as torchvision sets it for these weights). The script's ``calculate_fid`` gets a
  single sample repeated twice per side, so both covariances are zero and the value is exactly the
  **squared L2 distance** between the two feature vectors. The frame's value is the **minimum** over
  (reference, face) pairs; the video's is the mean over frames.
- **CLIPScore**: the frames are passed to ``CLIPProcessor`` as OpenCV decodes them, **BGR** arrays (a quirk
  of the script: the processor reads arrays as RGB), with the prompt (padding, truncation); the score is
  ``logits_per_image.mean()`` (= ``logit_scale.exp()`` · cos, 100 · cos for OpenAI CLIP), **not clamped**.

Where the script cannot produce a number we say what we do instead: a frame with no detected face makes the
script stop (``len(None)``), so such frames are left out here and counted in ``frames_without_faces``;
a video with no face in any frame gets no Face Sim and no FID. OpenCV's frame count comes from the
container; ours is the number of frames ffmpeg decodes (the same for the MP4 files this package writes).
The CurricularFace model the script also loads does not feed the numbers it returns, so it is not used.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ingredients_model.errors import IngredientsError

NUM_FRAMES = 24
DET_SIZE = 320
FACES_PER_FRAME = 2
ALIGNED_SIZE = 224
INCEPTION_SIZE = 299
PAD_SCALE = 1.25
BUFFALO_L_FILES = ("det_10g.onnx", "w600k_r50.onnx")
BUFFALO_L_SUBDIRS = ("models/buffalo_l", "buffalo_l", ".")
INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"  # torchvision's Inception_V3_Weights.IMAGENET1K_V1
BUFFALO_L_HINT = (
    "Put insightface's buffalo_l pack (det_10g.onnx, w600k_r50.onnx; from insightface's model zoo, "
    "buffalo_l.zip) in <model>/face_encoder/models/buffalo_l/ or ~/.insightface/models/buffalo_l/, or pass "
    "its folder with --face-models. The strict protocol does not need it."
)
INCEPTION_HINT = (
    f"Put torchvision's {INCEPTION_FILE} (https://download.pytorch.org/models/{INCEPTION_FILE}) in "
    "$TORCH_HOME/hub/checkpoints/ (where torchvision looks) or pass it with --inception; the network needs "
    "torchvision, which comes with the [gpu] extra."
)


# ------------------------------------------------------------------------------------------ frames


def face_frame_indices(total: int, num: int = NUM_FRAMES) -> list[int]:
    """``face_sim_fid.py``'s frame indices: ``np.linspace(0, total - 1, num, dtype=int)`` (repeats kept)."""
    if total <= 0 or num <= 0:
        return []
    return [int(i) for i in np.linspace(0, total - 1, num, dtype=int)]


def clip_frame_indices(total: int, num: int = NUM_FRAMES) -> list[int]:
    """``clip_score.py``'s frame indices: ``int(i * total / num)`` for ``i`` in ``0..num-1``."""
    if total <= 0 or num <= 0:
        return []
    return [int(i * total / num) for i in range(num)]


# ------------------------------------------------------------------------------------------- faces


def find_buffalo_l(face_models: Path | None = None, model_dir: Path | None = None) -> Path:
    """The folder holding buffalo_l's detector and recognizer.

    Looked for in ``face_models`` (the folder itself, ``buffalo_l/`` or ``models/buffalo_l/`` in it), then
    in ``<model_dir>/face_encoder/models/buffalo_l`` (where the script's
    ``FaceAnalysis(root=<model>/face_encoder)`` looks), then in insightface's own
    ``~/.insightface/models/buffalo_l`` (``$INSIGHTFACE_HOME`` if set).
    """
    roots: list[Path] = []
    if face_models is not None:
        roots.append(Path(face_models))
    if model_dir is not None:
        roots.append(Path(model_dir) / "face_encoder")
    roots.append(Path(os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser())
    for root in roots:
        for sub in BUFFALO_L_SUBDIRS:
            folder = (root / sub).resolve()
            if all((folder / name).is_file() for name in BUFFALO_L_FILES):
                return folder
    raise IngredientsError(
        f"insightface buffalo_l files missing ({', '.join(BUFFALO_L_FILES)}); looked in "
        + ", ".join(str(root) for root in roots)
        + " (and their models/buffalo_l/ and buffalo_l/)",
        BUFFALO_L_HINT,
    )


def load_face_analysis(folder: Path, device: str = "cpu", det_size: int = DET_SIZE):
    """insightface ``FaceAnalysis`` on the pack in ``folder`` (detection + recognition), prepared at
    ``det_size`` (320 in the scripts). Never downloads: the folder must hold the files."""
    from insightface.app import FaceAnalysis

    from ingredients_model.faces import insightface_ctx_id, onnx_providers

    folder = Path(folder)
    missing = [name for name in BUFFALO_L_FILES if not (folder / name).is_file()]
    if missing:
        raise IngredientsError(f"{folder} lacks {', '.join(missing)}", BUFFALO_L_HINT)
    app = FaceAnalysis(
        name=str(folder), allowed_modules=["detection", "recognition"], providers=onnx_providers(device)
    )
    if "recognition" not in app.models:
        raise IngredientsError(f"no recognition model among the ONNX files in {folder}", BUFFALO_L_HINT)
    app.prepare(ctx_id=insightface_ctx_id(device), det_size=(det_size, det_size))
    return app


def _area(face) -> float:
    box = face["bbox"]
    return float((box[2] - box[0]) * (box[3] - box[1]))


def largest_faces(faces: Sequence, count: int) -> list:
    """The ``count`` largest faces by box area, smallest first (``sorted(...)[-count:]``, stable)."""
    return sorted(faces, key=_area)[-count:] if faces else []


def pad_bgr(image: np.ndarray, scale: float = PAD_SCALE) -> tuple[np.ndarray, tuple[int, int]]:
    """Grey (128) border of ``int(size * (scale - 1))`` on each side; returns the image and (left, top)."""
    import cv2

    height, width = image.shape[:2]
    top = int(height * (scale - 1.0))
    left = int(width * (scale - 1.0))
    padded = cv2.copyMakeBorder(image, top, top, left, left, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    return padded, (left, top)


def aligned_face(bgr: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """insightface ``norm_crop`` at 224 of a BGR image, returned as RGB uint8 [224, 224, 3]."""
    from insightface.utils import face_align

    crop = face_align.norm_crop(bgr, landmark=keypoints, image_size=ALIGNED_SIZE)
    return np.ascontiguousarray(crop[:, :, ::-1])


@dataclass
class ReleasedFace:
    """One face as the scripts keep it: the raw ArcFace embedding and the aligned 224 RGB crop."""

    embedding: np.ndarray
    aligned: np.ndarray
    box: tuple[float, float, float, float]


def _to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    return np.asarray(image, dtype=np.uint8)


def reference_face(app, image: Image.Image | np.ndarray, what: str = "reference photo") -> ReleasedFace:
    """The largest face of a reference photo (RGB), retried on a padded copy (see the module docstring)."""
    bgr = np.ascontiguousarray(_to_rgb_array(image)[:, :, ::-1])
    faces = app.get(bgr)
    offset = np.zeros(2, dtype=np.float64)
    if not faces:
        padded, (left, top) = pad_bgr(bgr)
        faces = app.get(padded)
        offset = np.array([left, top], dtype=np.float64)
    if not faces:
        raise IngredientsError(
            f"no face found in the {what} (buffalo_l at det_size {getattr(app, 'det_size', DET_SIZE)})",
            "Use a photo where the face is visible and frontal.",
        )
    face = largest_faces(faces, 1)[0]
    keypoints = np.asarray(face["kps"], dtype=np.float64) - offset
    box = tuple(float(v) for v in (np.asarray(face["bbox"][:4], dtype=np.float64) - np.tile(offset, 2)))
    return ReleasedFace(np.asarray(face["embedding"]), aligned_face(bgr, keypoints), box)  # type: ignore[arg-type]


def frame_faces(app, frame: Image.Image | np.ndarray) -> list[ReleasedFace]:
    """The 2 largest faces of a frame (RGB), smallest first, with embeddings and aligned crops."""
    bgr = np.ascontiguousarray(_to_rgb_array(frame)[:, :, ::-1])
    return [
        ReleasedFace(
            np.asarray(face["embedding"]),
            aligned_face(bgr, np.asarray(face["kps"])),
            tuple(float(v) for v in face["bbox"][:4]),  # type: ignore[arg-type]
        )
        for face in largest_faces(app.get(bgr), FACES_PER_FRAME)
    ]


def max_pair_cosine(refs: Sequence[np.ndarray], faces: Sequence[np.ndarray]) -> float:
    """The largest cosine similarity over all (reference, face) pairs of raw embeddings."""
    a = np.stack([np.asarray(r, dtype=np.float64).ravel() for r in refs])
    b = np.stack([np.asarray(f, dtype=np.float64).ravel() for f in faces])
    cos = (a @ b.T) / (np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :])
    return float(cos.max())


def min_pair_squared_l2(refs: np.ndarray, faces: np.ndarray) -> float:
    """The smallest squared L2 distance over all (reference, face) pairs of feature vectors [N, D], [M, D]
    (= the script's ``calculate_fid`` on one sample per side)."""
    refs = np.asarray(refs, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.float64)
    return float((((refs[:, None, :] - faces[None, :, :]) ** 2).sum(-1)).min())


# ------------------------------------------------------------------------------------------- "FID"


class ReleasedFeatureExtractor:
    """The script's ``load_image`` + network: PIL bilinear resize to 299 × 299, 0..1 floats [B, 3, 299, 299]
    (no normalisation) into ``module``; returns features [B, D] (float32 maths, as on the GPU)."""

    def __init__(self, module, device: str = "cpu", batch_size: int = 16):
        self.module = module.to(device).eval()
        self.device = device
        self.batch_size = batch_size

    @staticmethod
    def preprocess(face: np.ndarray) -> np.ndarray:
        """One aligned RGB face → float32 [3, 299, 299] in 0..1."""
        image = Image.fromarray(np.asarray(face, dtype=np.uint8)).convert("RGB")
        image = image.resize((INCEPTION_SIZE, INCEPTION_SIZE), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0

    def __call__(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        batch = np.stack([self.preprocess(face) for face in faces])
        out = []
        with torch.no_grad():
            for start in range(0, len(batch), self.batch_size):
                x = torch.from_numpy(batch[start : start + self.batch_size]).to(self.device)
                feats = self.module(x)
                out.append(feats.reshape(feats.shape[0], -1).float().cpu().numpy())
        return np.concatenate(out, axis=0)


def find_inception_weights(path: Path | None = None) -> Path:
    """torchvision's Inception-v3 ImageNet weights: ``path`` (the file or a folder holding it), else
    ``$TORCH_HOME/hub/checkpoints/`` where ``Inception_V3_Weights.DEFAULT`` is cached."""
    if path is not None:
        path = Path(path)
        candidate = path / INCEPTION_FILE if path.is_dir() else path
    else:
        import torch

        candidate = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if not candidate.is_file():
        raise IngredientsError(f"torchvision Inception-v3 weights missing: {candidate}", INCEPTION_HINT)
    return candidate


def check_weights_hash(path: Path) -> None:
    """torchvision's check: the file name's ``-<hex>.`` part must prefix the file's sha256."""
    expected = Path(path).name.rsplit("-", 1)[-1].split(".")[0]
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(expected):
        raise IngredientsError(
            f"{path} is damaged or not torchvision's file "
            f"(sha256 {digest.hexdigest()[:8]}…, expected {expected}…)",
            INCEPTION_HINT,
        )


def torchvision_inception(
    weights: Path, device: str = "cpu", verify: bool = True
) -> ReleasedFeatureExtractor:
    """torchvision ``inception_v3`` with the ImageNet weights from ``weights`` and ``fc = Identity``
    (the script's FID network). Needs torchvision (the ``[gpu]`` extra)."""
    import torch

    try:
        from torchvision.models import inception_v3
    except (ImportError, RuntimeError) as err:
        raise IngredientsError(f"the released FID network needs torchvision: {err}", INCEPTION_HINT) from err
    weights = Path(weights)
    if verify:
        check_weights_hash(weights)
    model = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    try:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError) as err:
        raise IngredientsError(f"cannot load {weights}: {str(err)[:300]}", INCEPTION_HINT) from err
    model.fc = torch.nn.Identity()
    return ReleasedFeatureExtractor(model, device=device)


# --------------------------------------------------------------------------------------- per video


@dataclass
class ReleasedVideoResult:
    """One video scored by the released rules (face_sim as a fraction; fid None without a network)."""

    face_sim: float | None
    fid: float | None
    frames: int  # frames read (24 unless indices fell past the end)
    frames_without_faces: int  # left out (the script would stop on them)
    per_frame_face_sim: list[float | None] = field(default_factory=list)
    per_frame_fid: list[float | None] = field(default_factory=list)


def score_frames(
    app,
    refs: Sequence[ReleasedFace],
    frames: Sequence[Image.Image | np.ndarray],
    features: ReleasedFeatureExtractor | None = None,
) -> ReleasedVideoResult:
    """Face Sim and per-frame "FID" of ``frames`` (RGB) against reference faces (see the module docstring)."""
    if not refs:
        raise ValueError("no reference faces")
    ref_features = features([r.aligned for r in refs]) if features is not None else None
    sims: list[float | None] = []
    fids: list[float | None] = []
    for frame in frames:
        faces = frame_faces(app, frame)
        if not faces:
            sims.append(None)
            fids.append(None)
            continue
        sims.append(max_pair_cosine([r.embedding for r in refs], [f.embedding for f in faces]))
        if ref_features is not None and features is not None:
            fids.append(min_pair_squared_l2(ref_features, features([f.aligned for f in faces])))
        else:
            fids.append(None)
    seen_sims = [s for s in sims if s is not None]
    seen_fids = [f for f in fids if f is not None]
    return ReleasedVideoResult(
        face_sim=float(np.mean(seen_sims)) if seen_sims else None,
        fid=float(np.mean(seen_fids)) if seen_fids else None,
        frames=len(frames),
        frames_without_faces=sum(s is None for s in sims),
        per_frame_face_sim=sims,
        per_frame_fid=fids,
    )


def score_video(
    app,
    refs: Sequence[ReleasedFace],
    video: Path,
    features: ReleasedFeatureExtractor | None = None,
    num_frames: int = NUM_FRAMES,
) -> ReleasedVideoResult:
    """:func:`score_frames` on the video's frames at :func:`face_frame_indices`."""
    from ingredients_model.metrics.video import count_frames, read_video_frames

    frames = read_video_frames(video, face_frame_indices(count_frames(Path(video)), num_frames))
    return score_frames(app, refs, frames, features)


def clip_score_video(scorer, video: Path, prompt: str, num_frames: int = NUM_FRAMES) -> float:
    """``clip_score.py`` on a video: frames at :func:`clip_frame_indices`, as BGR arrays, no clamp."""
    from ingredients_model.metrics.video import count_frames, read_video_frames

    frames = read_video_frames(video, clip_frame_indices(count_frames(Path(video)), num_frames))
    return scorer.released_score([np.asarray(f)[:, :, ::-1] for f in frames], prompt)
