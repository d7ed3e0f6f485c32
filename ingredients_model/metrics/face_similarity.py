"""Face similarity between generated clips and reference photos, ``protocol: strict`` (ours).

The public scripts' rules (buffalo_l, the 2 largest faces, best pair per frame) are
:mod:`ingredients_model.metrics.released`; this module measures what a multi-person production needs.

Backends (all weights local, never downloaded at run time):

- ``arcface``: insightface antelopev2 — SCRFD detector ``scrfd_10g_bnkps.onnx`` + ArcFace ``glintr100.onnx``
  (cosine similarity of L2-normalised 512-d embeddings), looked up in the model folder's ``face_encoder/``
  (``face_encoder/models/antelopev2/``, ``face_encoder/antelopev2/`` or ``face_encoder/`` itself).
- ``curricularface``: the same SCRFD detection + alignment, embeddings from CurricularFace IR-101
  ``face_encoder/glint360k_curricular_face_r101_backbone.bin`` (TFace ``IR_101`` state dict; see
  :mod:`ingredients_model.metrics.curricularface`), cosine similarity. ConsisID's evaluation uses it (the
  Ingredients script loads it too, but its returned numbers come from ArcFace).
- ``dlib``: the offline fallback (engineer D's :mod:`ingredients_model.face_tools`, HOG detector + dlib's
  ResNet 128-d descriptor, weights from ``face-recognition-models``). Similarity is ``1 − euclidean distance``
  (dlib's same-person threshold 0.6 becomes 0.4). Its numbers are *not* comparable with the paper's.

Strict protocol per frame: detect all faces, match them greedily (one to one) to the reference faces, take
the minimum over the references (0 for one left without a face), clamped at 0
(:mod:`ingredients_model.metrics.matching`); a clip's score is the mean over all sampled frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

import numpy as np
from PIL import Image, ImageOps

from ingredients_model.errors import IngredientsError
from ingredients_model.metrics.matching import ClipMatchSummary, FrameMatch, greedy_match, summarize

DETECTOR_FILE = "scrfd_10g_bnkps.onnx"
ARCFACE_FILE = "glintr100.onnx"
CURRICULARFACE_FILE = "glint360k_curricular_face_r101_backbone.bin"
ANTELOPEV2_SUBDIRS = ("models/antelopev2", "antelopev2", ".")
BackendName = Literal["auto", "arcface", "curricularface", "dlib"]
BACKENDS: tuple[str, ...] = get_args(BackendName)
GET_WEIGHTS_HINT = (
    "Download the released model folder (it includes face_encoder/), or put the "
    "insightface antelopev2 files in <model>/face_encoder/models/antelopev2/. Use --backend dlib to evaluate "
    "offline with dlib (numbers not comparable with the paper's)."
)


@dataclass
class DetectedFace:
    """One face found in an image: box (left, top, right, bottom) in pixels, detector score, embedding."""

    box: tuple[float, float, float, float]
    score: float
    embedding: np.ndarray

    @property
    def area(self) -> float:
        left, top, right, bottom = self.box
        return max(0.0, right - left) * max(0.0, bottom - top)

    def crop(self, image: Image.Image, margin: float = 0.2) -> Image.Image:
        """The face region of ``image`` with ``margin`` (fraction of the box size) around it."""
        left, top, right, bottom = self.box
        dx, dy = (right - left) * margin, (bottom - top) * margin
        box = (
            max(0, round(left - dx)),
            max(0, round(top - dy)),
            min(image.width, round(right + dx)),
            min(image.height, round(bottom + dy)),
        )
        return image.crop(box)


class FaceBackend(Protocol):
    """Detects faces with embeddings and compares embeddings."""

    name: str  # "arcface" | "curricularface" | "dlib"
    label: str  # shown next to every number this backend produced
    offline_fallback: bool  # True for dlib: numbers not comparable with the paper's
    same_person_threshold: float  # similarities below this are flagged as a different person / drift

    def detect(self, image: Image.Image) -> list[DetectedFace]: ...

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float: ...


def _l2(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class DlibBackend:
    """Offline fallback on D's dlib tools; similarity = 1 − dlib distance."""

    name = "dlib"
    label = "dlib ResNet-128 (offline fallback; similarity = 1 − distance, not comparable with ArcFace)"
    offline_fallback = True
    same_person_threshold = 0.4  # = dlib's own distance threshold 0.6

    def __init__(self) -> None:
        from ingredients_model import face_tools

        self._tools = face_tools

    def detect(self, image: Image.Image) -> list[DetectedFace]:
        image = image.convert("RGB")
        faces = []
        for box in self._tools.detect_faces(image):
            descriptor = np.asarray(self._tools.face_descriptor(image, box), dtype=np.float32)
            faces.append(
                DetectedFace(
                    box=(float(box.left), float(box.top), float(box.right), float(box.bottom)),
                    score=float(getattr(box, "score", 1.0)),
                    embedding=descriptor,
                )
            )
        return faces

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return 1.0 - float(self._tools.face_distance(a, b))


def find_antelopev2_file(face_encoder_dir: Path, filename: str) -> Path | None:
    """The first existing ``filename`` among the antelopev2 locations under ``face_encoder_dir``."""
    for sub in ANTELOPEV2_SUBDIRS:
        candidate = Path(face_encoder_dir) / sub / filename
        if candidate.is_file():
            return candidate.resolve()
    return None


def _require(face_encoder_dir: Path, filenames: Sequence[str]) -> list[Path]:
    found = [find_antelopev2_file(face_encoder_dir, name) for name in filenames]
    missing = [name for name, path in zip(filenames, found, strict=True) if path is None]
    if missing:
        where = ", ".join(str(Path(face_encoder_dir) / sub) for sub in ANTELOPEV2_SUBDIRS)
        raise IngredientsError(
            f"face weights missing: {', '.join(missing)} (looked in {where})", GET_WEIGHTS_HINT
        )
    return [p for p in found if p is not None]


class _InsightFaceDetection:
    """SCRFD detection + 5-point landmarks via insightface (shared by ArcFace and CurricularFace)."""

    def _init_detector(self, detector_path: Path, device: str, det_size: int) -> None:
        from insightface.model_zoo import get_model

        from ingredients_model.faces import insightface_ctx_id, onnx_providers

        self._detector = get_model(str(detector_path), providers=onnx_providers(device))
        if self._detector is None:
            raise IngredientsError(f"{detector_path} is not a face detector ONNX file", GET_WEIGHTS_HINT)
        self._detector.prepare(ctx_id=insightface_ctx_id(device), input_size=(det_size, det_size))

    def _detect_raw(self, image: Image.Image) -> tuple[np.ndarray, list]:
        from insightface.app.common import Face

        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        bboxes, kpss = self._detector.detect(bgr, max_num=0)
        faces = [
            Face(bbox=bboxes[i, :4], kps=kpss[i] if kpss is not None else None, det_score=float(bboxes[i, 4]))
            for i in range(len(bboxes))
        ]
        faces.sort(key=lambda f: float(f.bbox[0]))  # left to right
        return bgr, faces


class ArcFaceBackend(_InsightFaceDetection):
    """insightface antelopev2: SCRFD detection, ArcFace glintr100 embeddings, cosine similarity."""

    name = "arcface"
    label = "ArcFace (insightface antelopev2 glintr100), cosine similarity"
    offline_fallback = False
    same_person_threshold = 0.3

    def __init__(self, face_encoder_dir: Path, device: str = "cpu", det_size: int = 640):
        from insightface.model_zoo import get_model

        detector, recognizer = _require(face_encoder_dir, [DETECTOR_FILE, ARCFACE_FILE])
        self._init_detector(detector, device, det_size)
        from ingredients_model.faces import insightface_ctx_id, onnx_providers

        self._recognizer = get_model(str(recognizer), providers=onnx_providers(device))
        self._recognizer.prepare(ctx_id=insightface_ctx_id(device))

    @classmethod
    def from_models(cls, detector, recognizer) -> ArcFaceBackend:
        """A backend on already loaded insightface models: any detector with ``detect(bgr, max_num=0) ->
        (boxes [N, 5], keypoints [N, 5, 2])`` and a recognizer with ``get(bgr, face)`` (``ArcFaceONNX``)."""
        backend = cls.__new__(cls)
        backend._detector = detector
        backend._recognizer = recognizer
        return backend

    def detect(self, image: Image.Image) -> list[DetectedFace]:
        bgr, faces = self._detect_raw(image)
        return [
            DetectedFace(
                box=tuple(float(v) for v in face.bbox),
                score=face.det_score,
                embedding=_l2(self._recognizer.get(bgr, face)),
            )
            for face in faces
        ]

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.dot(_l2(a), _l2(b)))


class CurricularFaceBackend(_InsightFaceDetection):
    """SCRFD detection + insightface alignment, CurricularFace IR-101 embeddings (as ConsisID evaluates)."""

    name = "curricularface"
    label = "CurricularFace IR-101 (glint360k), cosine similarity"
    offline_fallback = False
    same_person_threshold = 0.3

    def __init__(self, face_encoder_dir: Path, device: str = "cpu", det_size: int = 640):
        from ingredients_model.metrics.curricularface import load_curricularface

        (detector,) = _require(face_encoder_dir, [DETECTOR_FILE])
        weights = Path(face_encoder_dir) / CURRICULARFACE_FILE
        self._init_detector(detector, device, det_size)
        self._model = load_curricularface(weights, device=device)
        self._device = device

    @classmethod
    def from_models(cls, detector, model, device: str = "cpu") -> CurricularFaceBackend:
        """A backend on a loaded insightface detector (see :meth:`ArcFaceBackend.from_models`) and IR net."""
        backend = cls.__new__(cls)
        backend._detector = detector
        backend._model = model.to(device).eval()
        backend._device = device
        return backend

    def detect(self, image: Image.Image) -> list[DetectedFace]:
        import cv2
        import torch
        from insightface.utils import face_align

        bgr, faces = self._detect_raw(image)
        if not faces:
            return []
        crops = []
        for face in faces:
            aligned = cv2.cvtColor(
                face_align.norm_crop(bgr, landmark=face.kps, image_size=224), cv2.COLOR_BGR2RGB
            )
            crops.append(cv2.resize(aligned, (112, 112)))
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().to(self._device)
        with torch.no_grad():
            embeddings = self._model(batch.div(255).sub(0.5).div(0.5)).float().cpu().numpy()
        return [
            DetectedFace(box=tuple(float(v) for v in f.bbox), score=f.det_score, embedding=_l2(e))
            for f, e in zip(faces, embeddings, strict=True)
        ]

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.dot(_l2(a), _l2(b)))


def arcface_available(face_encoder_dir: Path | None) -> bool:
    """True when the ArcFace detector and recognizer files are present."""
    if face_encoder_dir is None:
        return False
    return all(find_antelopev2_file(face_encoder_dir, f) for f in (DETECTOR_FILE, ARCFACE_FILE))


def load_face_backend(
    name: str = "auto", face_encoder_dir: Path | None = None, device: str = "cpu"
) -> FaceBackend:
    """Build a backend by name. ``auto`` = ArcFace when its weights are in ``face_encoder_dir``, else dlib."""
    if name not in BACKENDS:
        raise IngredientsError(f"unknown face backend {name!r}", f"Use one of: {', '.join(BACKENDS)}.")
    if name == "auto":
        name = "arcface" if arcface_available(face_encoder_dir) else "dlib"
    if name == "dlib":
        return DlibBackend()
    if face_encoder_dir is None:
        raise IngredientsError(
            f"the {name} backend needs a model folder with face_encoder/", GET_WEIGHTS_HINT
        )
    if name == "arcface":
        return ArcFaceBackend(face_encoder_dir, device=device)
    return CurricularFaceBackend(face_encoder_dir, device=device)


def similarity_matrix(
    backend: FaceBackend, refs: Sequence[np.ndarray], faces: Sequence[DetectedFace]
) -> np.ndarray:
    """``[len(refs), len(faces)]`` similarities."""
    sim = np.zeros((len(refs), len(faces)), dtype=np.float64)
    for r, ref in enumerate(refs):
        for f, face in enumerate(faces):
            sim[r, f] = backend.similarity(ref, face.embedding)
    return sim


def reference_face(backend: FaceBackend, image: Image.Image, what: str = "reference photo") -> DetectedFace:
    """The largest face in a reference photo (retried on a grey-padded copy for tight crops)."""
    image = image.convert("RGB")
    faces = backend.detect(image)
    if not faces:
        pad = max(image.width, image.height) // 4
        padded = ImageOps.expand(image, border=pad, fill=(128, 128, 128))
        faces = backend.detect(padded)
        for face in faces:
            left, top, right, bottom = face.box
            face.box = (left - pad, top - pad, right - pad, bottom - pad)
    if not faces:
        raise IngredientsError(
            f"no face found in the {what}",
            "Use a photo where the face is visible, frontal and at least ~80 pixels wide.",
        )
    return max(faces, key=lambda f: f.area)


@dataclass
class ClipFaceResult:
    """Per-frame detections and matches of one clip against its references, and their summary."""

    detections: list[list[DetectedFace]]
    frames: list[FrameMatch]
    summary: ClipMatchSummary

    def matched_embeddings(self, ref: int) -> list[np.ndarray]:
        """Embeddings of the faces matched to reference ``ref`` over all frames."""
        out = []
        for faces, fm in zip(self.detections, self.frames, strict=True):
            index = fm.face_of(ref)
            if index is not None:
                out.append(faces[index].embedding)
        return out


def clip_face_similarity(
    backend: FaceBackend, refs: Sequence[np.ndarray], frames: Sequence[Image.Image]
) -> ClipFaceResult:
    """Detect every face per frame, match greedily to ``refs`` (embeddings), summarize (strict protocol)."""
    detections = [backend.detect(frame) for frame in frames]
    matches = [greedy_match(similarity_matrix(backend, refs, faces)) for faces in detections]
    return ClipFaceResult(detections=detections, frames=matches, summary=summarize(matches))
