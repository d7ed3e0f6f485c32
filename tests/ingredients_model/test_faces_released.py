"""The released face encoder end to end, with randomly initialised weights in the released file layout.

Needs the ``[gpu]`` extra (torchvision, facexlib, consisid_eva_clip), so it is skipped in the CPU test
environment; run it where the extra is installed. Random RetinaFace/SCRFD weights detect nothing, so the
detectors are fed dlib's boxes and 5 points; loading, SCRFD decoding, ArcFace, facexlib alignment, bisenet
parsing and EVA02-CLIP-L-14-336 all run for real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("torchvision")
pytest.importorskip("facexlib")
pytest.importorskip("consisid_eva_clip")

from ingredients_model.face_tools import detect_faces, face_landmarks, load_photo
from ingredients_model.faces import ReleasedFaceEncoder, load_face_encoder
from tests.ingredients_model.test_faces import _random_arcface_onnx

pytestmark = pytest.mark.slow


def _silent_scrfd_onnx(path: Path) -> None:
    """An SCRFD-shaped graph (3 strides x scores/boxes/5 points, 2 anchors) whose scores never pass 0.5."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits, nodes, outs = [], [], {"s": [], "b": [], "k": []}
    for s in (8, 16, 32):
        nodes.append(
            helper.make_node("AveragePool", ["input.1"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s])
        )
        for kind, channels, width in (("s", 2, 1), ("b", 8, 4), ("k", 20, 10)):
            inits += [
                numpy_helper.from_array(
                    rng.normal(0, 0.1, (channels, 3, 1, 1)).astype(np.float32), f"w{kind}{s}"
                ),
                numpy_helper.from_array(
                    np.full(channels, -20.0 if kind == "s" else 0.0, np.float32), f"b{kind}{s}"
                ),
                numpy_helper.from_array(np.array([-1, width], np.int64), f"r{kind}{s}"),
            ]
            nodes.append(helper.make_node("Conv", [f"p{s}", f"w{kind}{s}", f"b{kind}{s}"], [f"c{kind}{s}"]))
            source = f"c{kind}{s}"
            if kind == "s":
                nodes.append(helper.make_node("Sigmoid", [source], [f"g{s}"]))
                source = f"g{s}"
            nodes.append(helper.make_node("Transpose", [source], [f"t{kind}{s}"], perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Reshape", [f"t{kind}{s}", f"r{kind}{s}"], [f"o{kind}{s}"]))
            outs[kind].append(helper.make_tensor_value_info(f"o{kind}{s}", TensorProto.FLOAT, [None, width]))
    graph = helper.make_graph(
        nodes,
        "scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 640, 640])],
        outs["s"] + outs["b"] + outs["k"],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def released_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from consisid_eva_clip import create_model
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.bisenet import BiSeNet
    from facexlib.parsing.parsenet import ParseNet

    root = tmp_path_factory.mktemp("released") / "face_encoder"
    antelope = root / "models" / "antelopev2"
    antelope.mkdir(parents=True)
    _random_arcface_onnx(antelope / "glintr100.onnx")
    _silent_scrfd_onnx(antelope / "scrfd_10g_bnkps.onnx")
    torch.manual_seed(0)
    torch.save(
        RetinaFace(network_name="resnet50", half=False, device="cpu").state_dict(),
        root / "detection_Resnet50_Final.pth",
    )
    torch.save(BiSeNet(num_class=19).state_dict(), root / "parsing_bisenet.pth")
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), root / "parsing_parsenet.pth")
    torch.save(
        create_model("EVA02-CLIP-L-14-336", force_custom_clip=True).state_dict(),
        root / "EVA02_CLIP_L_336_psz14_s6B.pt",
    )
    return root


def _dlib_rows(image_bgr: np.ndarray) -> np.ndarray:
    """dlib faces as RetinaFace rows: x1, y1, x2, y2, score, then 5 points (eyes, nose, mouth corners)."""
    rgb = Image.fromarray(image_bgr[:, :, ::-1].copy())
    rows = []
    for box in detect_faces(rgb):
        p = face_landmarks(rgb, box, points=68)
        five = np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
        rows.append([box.left, box.top, box.right, box.bottom, 0.99, *five.reshape(-1)])
    return np.array(rows, dtype=np.float32).reshape(-1, 15)


def test_released_encoder_end_to_end(released_dir: Path, t1_jpg: Path) -> None:
    encoder = load_face_encoder(released_dir)
    assert isinstance(encoder, ReleasedFaceEncoder) and encoder.arcface_dim == 512
    encoder.helper.face_det.detect_faces = lambda image, threshold: _dlib_rows(image)
    image = load_photo(t1_jpg)
    boxes = detect_faces(image)

    # SCRFD finds nothing: the released fallback (ArcFace on the facexlib crop), centre face or a chosen one
    for face_index in (None, 3):
        emb = encoder.encode(image, face_index=face_index)
        assert emb.id_cond.shape == (1280,) and emb.id_cond.dtype == torch.float32
        assert torch.linalg.norm(emb.id_cond[512:]).item() == pytest.approx(1.0, abs=1e-4)
        assert [tuple(h.shape) for h in emb.id_vit_hidden] == [(577, 1024)] * 5
        assert emb.aligned_face.size == (512, 512)

    # SCRFD path: detections drive the choice; facexlib aligns the face that matches the box
    class DlibAsScrfd:
        def detect(self, bgr: np.ndarray, max_num: int = 0, metric: str = "default"):
            rows = _dlib_rows(bgr)
            return rows[:, :5], rows[:, 5:].reshape(-1, 5, 2)

    encoder.detector = DlibAsScrfd()
    second, fifth = encoder.encode(image, face_index=1), encoder.encode(image, face_index=4)
    assert second.face_box == (boxes[1].left, boxes[1].top, boxes[1].right, boxes[1].bottom)
    assert fifth.face_box == (boxes[4].left, boxes[4].top, boxes[4].right, boxes[4].bottom)
    assert not torch.equal(second.id_cond[:512], fifth.id_cond[:512])
    again = encoder.encode(image, face_index=1)
    assert torch.equal(second.id_cond, again.id_cond)
