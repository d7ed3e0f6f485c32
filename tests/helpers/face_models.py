"""Stand-in face models, built on the fly (no weights are downloadable here).

- ``write_tiny_arcface_onnx``: a random 112x112 → 512 ONNX graph; insightface loads it as a real
  ``ArcFaceONNX`` (the embedding is a fixed random linear map of the normalised aligned crop).
- ``write_tiny_scrfd_onnx``: a 9-output SCRFD-shaped ONNX graph insightface loads as its detector; it fires on
  bright 32-pixel cells (enough to check loading and the detection path, not for crafted rules).
- ``SquareFaceDetector``: insightface's detector interface (``detect(bgr, max_num, metric)``) for crafted
  frames: every textured square on a black background is a face, with the 5 keypoints placed so that
  insightface's ``norm_crop`` maps the square's inner 80 % onto the aligned crop.
- ``DlibKeypointDetector``: the same interface on dlib, for real photos.
- ``texture``/``frame``: textured "faces" per identity; ``inverted`` faces have exactly the opposite ArcFace
  input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
INNER = 0.1  # keypoints map the square shrunk by 10 % per side onto the aligned crop


def write_tiny_arcface_onnx(path: Path, seed: int = 0) -> Path:
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(size=(3 * 112 * 112, 512)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input.1"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["emb"]),
        ],
        "arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", 512])],
        initializer=[weight],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def write_tiny_scrfd_onnx(path: Path) -> Path:
    """SCRFD layout: per stride 8/16/32 a [cells·2, 1] score, [cells·2, 4] box and [cells·2, 10] keypoint
    output. Only stride 32 fires: score = sigmoid(40·(cell mean − 0.5)) on the normalised input, boxes 4
    strides wide, keypoints at the ArcFace template's places in that box."""
    from onnx import TensorProto, helper, numpy_helper, save

    nodes, inits, outputs = [], [], []
    template = (ARCFACE_TEMPLATE / 112.0 - 0.5) * 4.0  # in strides, relative to the anchor centre
    heads = {"score": 1, "bbox": 4, "kps": 10}
    for kind, channels in heads.items():
        for stride in (8, 16, 32):
            name = f"{kind}_{stride}"
            weight = np.zeros((2 * channels, 3, stride, stride), np.float32)
            bias = np.zeros(2 * channels, np.float32)
            if kind == "score":
                if stride == 32:
                    weight[:] = 40.0 / (3 * stride * stride)
                    bias[:] = -20.0
                else:
                    bias[:] = -50.0
            elif kind == "bbox":
                bias[:] = 2.0
            else:
                bias[:] = np.tile(template.ravel(), 2)
            inits += [
                numpy_helper.from_array(weight, f"{name}_w"),
                numpy_helper.from_array(bias, f"{name}_b"),
            ]
            nodes.append(
                helper.make_node(
                    "Conv", ["input.1", f"{name}_w", f"{name}_b"], [f"{name}_c"], strides=[stride, stride]
                )
            )
            last = f"{name}_c"
            if kind == "score":
                nodes.append(helper.make_node("Sigmoid", [last], [f"{name}_s"]))
                last = f"{name}_s"
            nodes.append(helper.make_node("Transpose", [last], [f"{name}_t"], perm=[0, 2, 3, 1]))
            inits.append(numpy_helper.from_array(np.array([-1, channels], np.int64), f"{name}_shape"))
            nodes.append(helper.make_node("Reshape", [f"{name}_t", f"{name}_shape"], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["M", channels]))
    graph = helper.make_graph(
        nodes,
        "scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "H", "W"])],
        outputs,
        initializer=inits,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


class SquareFaceDetector:
    """Every connected region that is neither black nor padding grey (128) is a face; regions touching the
    image border are missed (as real detectors miss tight crops). Returns insightface's (boxes [N, 5],
    keypoints [N, 5, 2]) in raster order."""

    taskname = "detection"

    def detect(self, img, max_num=0, metric="default", **_):
        from scipy import ndimage

        img = np.asarray(img)
        labels, count = ndimage.label((img.max(axis=2) > 24) & ~(img == 128).all(axis=2))
        boxes, kpss = [], []
        height, width = labels.shape
        for region in ndimage.find_objects(labels)[:count]:
            y0, y1, x0, x1 = region[0].start, region[0].stop, region[1].start, region[1].stop
            if x0 == 0 or y0 == 0 or x1 == width or y1 == height:
                continue
            size = x1 - x0
            inner = size * (1 - 2 * INNER)
            kpss.append(np.array([x0, y0]) + size * INNER + ARCFACE_TEMPLATE / 112.0 * inner)
            boxes.append([x0, y0, x1, y1, 0.9])
        return (
            np.array(boxes, np.float32).reshape(-1, 5),
            np.array(kpss, np.float32).reshape(-1, 5, 2),
        )

    def prepare(self, *args, **kwargs):
        pass


def texture(identity: int, size: int, inverted: bool = False) -> np.ndarray:
    """A face of ``identity``: random pixels in 60..195, the same at any ``size`` (nearest upsampling of a
    28 x 28 pattern); ``inverted`` gives 255 − pixel, whose ArcFace input is exactly the negative."""
    rng = np.random.default_rng(100 + identity)
    pattern = rng.integers(60, 196, (28, 28, 3)).astype(np.uint8)
    face = np.asarray(Image.fromarray(pattern).resize((size, size), Image.Resampling.NEAREST))
    return 255 - face if inverted else face


def frame(
    faces: list[tuple[int, int, int, int]], height: int = 240, width: int = 320, inverted=()
) -> np.ndarray:
    """An RGB frame with faces (identity, x, y, size) on black."""
    image = np.zeros((height, width, 3), np.uint8)
    for identity, x, y, size in faces:
        image[y : y + size, x : x + size] = texture(identity, size, inverted=identity in inverted)
    return image


class DlibKeypointDetector:
    """insightface's detector interface on dlib (real faces in real photos): boxes + the 5 keypoints ArcFace
    aligns on, right to left (users of the interface must sort)."""

    taskname = "detection"

    def prepare(self, *args, **kwargs):
        pass

    def detect(self, bgr, max_num=0, metric="default", **_):
        from ingredients_model import face_tools

        image = Image.fromarray(bgr[:, :, ::-1].copy())
        boxes, kpss = [], []
        for box in reversed(face_tools.detect_faces(image)):  # right to left: the backend must sort
            marks = face_tools.face_landmarks(image, box, points=68)
            kps = [marks[36:42].mean(0), marks[42:48].mean(0), marks[30], marks[48], marks[54]]
            boxes.append([box.left, box.top, box.right, box.bottom, box.score])
            kpss.append(kps)
        return np.array(boxes, dtype=np.float32).reshape(-1, 5), np.array(kpss, dtype=np.float32).reshape(
            -1, 5, 2
        )


def face_analysis(folder: Path, detector):
    """insightface's real ``FaceAnalysis`` loaded from a buffalo_l-style ``folder`` (see
    :func:`write_buffalo_l`), with its detector swapped for ``detector`` (recognition, alignment and ``get``
    stay insightface's own)."""
    from ingredients_model.metrics.released import load_face_analysis

    app = load_face_analysis(folder)
    app.models["detection"] = detector
    app.det_model = detector
    return app


def write_buffalo_l(folder: Path) -> Path:
    """A buffalo_l folder with the tiny SCRFD-shaped detector and the tiny ArcFace."""
    write_tiny_scrfd_onnx(folder / "det_10g.onnx")
    write_tiny_arcface_onnx(folder / "w600k_r50.onnx")
    return folder
