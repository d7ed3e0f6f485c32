"""The insightface path of `prepare` (released antelopev2 layout) on stand-in ONNX graphs: a detector
with SCRFD's 9 outputs that fires on saturated colour, and a random 112 px → 512 ArcFace. No weights
are available here, so this checks the glue (detector choice, insightface calls, embeddings), not quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from ingredients_model.errors import IngredientsError
from ingredients_model.training.config import PrepareConfig
from ingredients_model.training.prepare import InsightfaceDetector, make_detector

from .conftest import blob_clip


def _save(nodes, inputs, outputs, inits, path: Path) -> None:
    model = helper.make_model(
        helper.make_graph(nodes, path.stem, inputs, outputs, inits),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def fake_scrfd(path: Path, size: int = 640) -> None:
    """Scores sigmoid(4(|R-G| + |B-G|) - 3) on the stride-32 level (others never fire), fixed large boxes."""
    inits = [
        numpy_helper.from_array(np.array([[1, -1, 0], [0, -1, 1]], np.float32).reshape(2, 3, 1, 1), "wd"),
        numpy_helper.from_array(np.full((2, 2, 1, 1), 4.0, np.float32), "ws"),
        numpy_helper.from_array(np.array([-1, 1], np.int64), "column"),
    ]
    nodes, scores, boxes, points = [], [], [], []
    kps = np.array([[-1, -1], [1, -1], [0, 0], [-0.8, 1], [0.8, 1]], np.float32).reshape(10)
    for s in (8, 16, 32):
        n = (size // s) ** 2 * 2
        inits += [
            numpy_helper.from_array(np.full(2, -3.0 if s == 32 else -20.0, np.float32), f"bias{s}"),
            numpy_helper.from_array(np.full((n, 4), 6.0, np.float32), f"bbox_{s}_c"),
            numpy_helper.from_array(np.tile(kps, (n, 1)), f"kps_{s}_c"),
        ]
        nodes += [
            helper.make_node("AveragePool", ["input"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s]),
            helper.make_node("Conv", [f"p{s}", "wd"], [f"d{s}"]),
            helper.make_node("Abs", [f"d{s}"], [f"a{s}"]),
            helper.make_node("Conv", [f"a{s}", "ws", f"bias{s}"], [f"l{s}"]),
            helper.make_node("Sigmoid", [f"l{s}"], [f"g{s}"]),
            helper.make_node("Transpose", [f"g{s}"], [f"t{s}"], perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [f"t{s}", "column"], [f"score_{s}"]),
            helper.make_node("Identity", [f"bbox_{s}_c"], [f"bbox_{s}"]),
            helper.make_node("Identity", [f"kps_{s}_c"], [f"kps_{s}"]),
        ]
        scores.append(helper.make_tensor_value_info(f"score_{s}", TensorProto.FLOAT, [n, 1]))
        boxes.append(helper.make_tensor_value_info(f"bbox_{s}", TensorProto.FLOAT, [n, 4]))
        points.append(helper.make_tensor_value_info(f"kps_{s}", TensorProto.FLOAT, [n, 10]))
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])
    _save(nodes, [image], scores + boxes + points, inits, path)


def fake_arcface(path: Path) -> None:
    weights = np.random.default_rng(0).standard_normal((192, 512)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[14, 14], strides=[14, 14]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "w"], ["embedding"]),
    ]
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 112, 112])
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 512])
    _save(nodes, [image], [out], [numpy_helper.from_array(weights, "w")], path)


@pytest.fixture(scope="module")
def fake_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fake-released")
    folder = root / "face_encoder" / "models" / "antelopev2"
    folder.mkdir(parents=True)
    fake_scrfd(folder / "scrfd_10g_bnkps.onnx")
    fake_arcface(folder / "glintr100.onnx")
    return root


def test_auto_picks_insightface_and_detects(fake_model_dir: Path, tmp_path: Path) -> None:
    config = PrepareConfig(
        manifest=tmp_path / "m.jsonl", output_dir=tmp_path, model_dir=fake_model_dir, masks="box"
    )
    detector = make_detector(config, torch.device("cpu"))
    assert isinstance(detector, InsightfaceDetector) and detector.default_link_threshold == 0.3
    frames, boxes = blob_clip(0)
    found = detector.detect(frames[0])
    assert found
    for det in found:
        assert det.embedding.shape == (512,) and np.isclose(np.linalg.norm(det.embedding), 1.0, atol=1e-5)
        assert 0.5 <= det.score <= 1.0
    centres = [((d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2) for d in found]
    blobs = [((b["0"][0] + b["0"][2]) / 2, (b["0"][1] + b["0"][3]) / 2) for b in boxes]
    for cx, cy in centres:  # every detection sits on a blob (within one stride-32 cell at this scale)
        assert min(np.hypot(cx - bx, cy - by) for bx, by in blobs) < 40
    for bx, by in blobs:  # and both blobs are found
        assert min(np.hypot(cx - bx, cy - by) for cx, cy in centres) < 40
    # the gray background alone yields nothing
    assert detector.detect(np.full_like(frames[0], 128)) == []


def test_dlib_when_the_folder_has_no_insightface_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = PrepareConfig(
        manifest=tmp_path / "m.jsonl", output_dir=tmp_path, model_dir=tiny_model_dir, masks="box"
    )
    assert type(make_detector(config, torch.device("cpu"))).__name__ == "DlibDetector"
    with pytest.raises(IngredientsError, match=r"scrfd_10g_bnkps\.onnx"):
        make_detector(config.model_copy(update={"detector": "insightface"}), torch.device("cpu"))
