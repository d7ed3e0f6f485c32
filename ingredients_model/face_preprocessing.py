"""The released face preprocessing, from the face detector's output to the encoders' inputs.

The released inference (``process_face_embeddings_split`` with ``infer.py``'s photo loading) does, per photo:

1. the photo as RGB, downsized with OpenCV's ``INTER_LANCZOS4`` to a 1024 px long side
   (:func:`ingredients_model.photos.load_photo`);
2. facexlib's RetinaFace (resnet50) on the BGR photo at a 0.97 score threshold; the **highest-scoring**
   face is used (RetinaFace returns its faces sorted by score);
3. that face warped onto facexlib's 512 px FFHQ five-point template (similarity transform by LMedS,
   grey border): the *aligned crop*, in colour, with hair, ears, neck and clothes;
4. ArcFace (antelopev2 ``glintr100``, insightface ``get_feat``) on the aligned crop, which ``get_feat``
   resizes to 112 px (:func:`arcface_input`); the embedding is not normalised;
5. EVA02-CLIP-L-14-336 on the same colour crop, bicubic-resized to 336 px and normalised with the
   OpenAI CLIP mean and std (:func:`clip_input`); its pooled feature is L2-normalised;
6. the identity canvas: the aligned crops resized to 360 px and pasted left to right on white
   (:func:`ingredients_model.faces.compose_identity_canvas`).

No face parsing, no greyscale and no white background: the released inference loads a BiSeNet parser
and insightface's SCRFD detector but never uses them. Everything here is plain NumPy/OpenCV/torch, so it
runs without facexlib or torchvision; the networks (detector, ArcFace, EVA-CLIP) are passed in by
:mod:`ingredients_model.faces`. ``tests/fixtures/face_golden.*`` holds the released code's outputs for
the same inputs (regenerate with ``scripts/record_face_golden.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ingredients_model.errors import IngredientsError
from ingredients_model.face_tools import box_iou

__all__ = [
    "ALIGNED_SIZE",
    "ALIGN_BORDER_BGR",
    "CLIP_MEAN",
    "CLIP_STD",
    "DETECTION_THRESHOLD",
    "FACE_TEMPLATE_512",
    "AlignedFace",
    "FaceDetection",
    "NoFaceError",
    "align_to_template",
    "arcface_input",
    "choose_face",
    "clip_input",
    "detect_and_align",
    "detections_from_rows",
]

DETECTION_THRESHOLD = 0.97
"""Score threshold facexlib's ``FaceRestoreHelper.get_face_landmarks_5`` passes to RetinaFace."""

ALIGNED_SIZE = 512
"""Side of the aligned face crop (``FaceRestoreHelper(face_size=512, crop_ratio=(1, 1))``)."""

FACE_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ]
)
"""facexlib's five-point FFHQ template for a 512 px crop: eyes, nose tip, mouth corners (x, y)."""

ALIGN_BORDER_BGR = (135, 133, 132)
"""Colour facexlib gives the crop where the warp leaves the photo (BGR)."""

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""EVA-CLIP's input mean (OpenAI CLIP's ``OPENAI_DATASET_MEAN``), used when the model carries none."""
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""EVA-CLIP's input std (OpenAI CLIP's ``OPENAI_DATASET_STD``)."""

Box = tuple[float, float, float, float]
RowDetector = Callable[[np.ndarray], np.ndarray]
"""A face detector: BGR uint8 photo → ``[N, 15]`` rows ``x1, y1, x2, y2, score, 5 × (x, y)`` (RetinaFace's
layout: eyes, nose tip, mouth corners), sorted or not."""


class NoFaceError(IngredientsError):
    """No (or not the requested) face was found in an image."""


@dataclass(frozen=True)
class FaceDetection:
    """One detected face: box ``(x1, y1, x2, y2)`` and five landmarks ``[5, 2]`` in photo pixels."""

    box: Box
    score: float
    landmarks: np.ndarray

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def detections_from_rows(rows: np.ndarray) -> list[FaceDetection]:
    """Detector rows (see :data:`RowDetector`) as :class:`FaceDetection` objects, in the rows' order.

    Landmarks keep the rows' dtype (RetinaFace: float32), which the alignment's LMedS fit sees."""
    rows = np.asarray(rows)
    if rows.size == 0:
        return []
    if rows.ndim != 2 or rows.shape[1] < 15:
        raise ValueError(f"face detector rows must be [N, 15] (box, score, 5 points), got {rows.shape}")
    return [
        FaceDetection(
            box=tuple(float(v) for v in row[:4]),
            score=float(row[4]),
            landmarks=np.array([[row[i], row[i + 1]] for i in range(5, 15, 2)]),
        )
        for row in rows
    ]


def choose_face(
    detections: Sequence[FaceDetection], face_index: int | None = None, face_box: Box | None = None
) -> int:
    """Index into ``detections`` of the face to encode.

    - neither given: the highest-scoring face (the released choice; the first of equal scores);
    - ``face_index``: 0-based, faces numbered left to right by box centre (then top to bottom);
    - ``face_box``: the face overlapping that box most (intersection over union), e.g. a face chosen
      with another detector on the same photo.
    """
    if not detections:
        raise NoFaceError("no face found in the image", "use a clearer, frontal photo of the face")
    if face_index is not None and face_box is not None:
        raise ValueError("pass face_index or face_box, not both")
    if face_box is not None:
        overlaps = [box_iou(d.box, tuple(float(v) for v in face_box)) for d in detections]
        best = int(np.argmax(overlaps))
        if overlaps[best] <= 0:
            raise NoFaceError(
                f"no detected face overlaps the chosen face at {tuple(round(v) for v in face_box)}",
                "choose another face or photo (the face detector did not find this one)",
            )
        return best
    if face_index is None:
        return int(np.argmax([d.score for d in detections]))
    order = sorted(range(len(detections)), key=lambda i: (detections[i].center[0], detections[i].center[1]))
    if not 0 <= face_index < len(detections):
        raise NoFaceError(
            f"face {face_index + 1} requested but {len(detections)} face(s) found",
            f"choose a face between 1 and {len(detections)} (numbered left to right)",
        )
    return order[face_index]


def align_to_template(image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The aligned crop: ``image_bgr`` warped so that the five ``landmarks`` land on
    :data:`FACE_TEMPLATE_512` (partial affine fit by LMedS, linear warp, :data:`ALIGN_BORDER_BGR`
    outside the photo). Returns a 512x512x3 array of the input's dtype and channel order."""
    import cv2

    matrix = cv2.estimateAffinePartial2D(np.asarray(landmarks), FACE_TEMPLATE_512, method=cv2.LMEDS)[0]
    if matrix is None:
        raise NoFaceError("the face's landmarks are degenerate", "use a clearer, frontal photo of the face")
    return cv2.warpAffine(
        image_bgr,
        matrix,
        (ALIGNED_SIZE, ALIGNED_SIZE),
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=ALIGN_BORDER_BGR,
    )


def arcface_input(face_bgr: np.ndarray, input_size: tuple[int, int], mean: float, std: float) -> np.ndarray:
    """ArcFace's input blob ``[1, 3, H, W]`` float32 from a BGR face crop of any size, as insightface's
    ``ArcFaceONNX.get_feat`` builds it: bilinear resize to ``input_size`` (w, h), RGB,
    ``(x - mean) / std``."""
    import cv2

    blob = cv2.dnn.blobFromImages([face_bgr], 1.0 / std, tuple(input_size), (mean, mean, mean), swapRB=True)
    return np.ascontiguousarray(blob, dtype=np.float32)


def clip_input(
    face_bgr: np.ndarray,
    image_size: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """EVA-CLIP's input ``[1, 3, S, S]`` float32 on ``device`` from a BGR face crop: RGB in [0, 1], bicubic
    resize with antialiasing (torchvision's ``resize`` on tensors), then ``(x - mean) / std`` per channel."""
    import cv2

    rgb = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float()[None] / 255.0
    x = torch.nn.functional.interpolate(
        x.to(device), size=(image_size, image_size), mode="bicubic", align_corners=False, antialias=True
    )
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - mean_t) / std_t


@dataclass
class AlignedFace:
    """The chosen face of a photo, aligned: what the encoders' inputs are made from."""

    crop_bgr: np.ndarray
    """512x512x3 uint8 BGR aligned crop."""
    detection: FaceDetection
    """The chosen detection, in the pixels of the photo the detector saw."""
    detections: list[FaceDetection]
    """All detections of the photo, in the detector's order."""


def detect_and_align(
    photo_bgr: np.ndarray,
    detect: RowDetector,
    face_index: int | None = None,
    face_box: Box | None = None,
) -> AlignedFace:
    """Detect the faces of a BGR uint8 photo, choose one (:func:`choose_face`) and align it."""
    detections = detections_from_rows(detect(photo_bgr))
    chosen = detections[choose_face(detections, face_index, face_box)]
    return AlignedFace(align_to_template(photo_bgr, chosen.landmarks), chosen, detections)
