"""ingredients_model.faces: tiny encoder, identity canvas, released-encoder errors and its ArcFace path."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ingredients_model.errors import IngredientsError, MissingWeightsError
from ingredients_model.face_tools import load_photo
from ingredients_model.faces import (
    RELEASED_FACE_ENCODER_FILES,
    ArcFaceEmbedder,
    FaceEncoder,
    IdentityEmbedding,
    NoFaceError,
    TinyFaceEncoder,
    compose_identity_canvas,
    load_face_encoder,
    missing_face_encoder_files,
    write_tiny_face_encoder,
)
from tests.helpers.face_stand_ins import random_arcface_onnx

DIMS = {"id_dim": 24, "vit_dim": 8, "vit_tokens": 5, "num_scales": 3}


@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("enc") / "face_encoder"
    write_tiny_face_encoder(folder, **DIMS, seed=3)
    return folder


@pytest.fixture(scope="module")
def tiny_encoder(tiny_encoder_dir: Path) -> TinyFaceEncoder:
    encoder = load_face_encoder(tiny_encoder_dir)
    assert isinstance(encoder, TinyFaceEncoder)
    return encoder


@pytest.fixture(scope="module")
def t1(t1_jpg: Path) -> Image.Image:
    return load_photo(t1_jpg)


def test_tiny_encoder_shapes_and_normalisation(tiny_encoder: TinyFaceEncoder, t1: Image.Image) -> None:
    assert isinstance(tiny_encoder, FaceEncoder)
    start = time.perf_counter()
    emb = tiny_encoder.encode(t1, face_index=0)
    print(f"tiny encode (detect + align + nets) {time.perf_counter() - start:.3f}s")
    assert isinstance(emb, IdentityEmbedding)
    assert emb.id_cond.shape == (24,) and emb.id_cond.dtype == torch.float32
    assert torch.linalg.norm(emb.id_cond[:12]).item() == pytest.approx(1.0, abs=1e-5)
    assert torch.linalg.norm(emb.id_cond[12:]).item() == pytest.approx(1.0, abs=1e-5)
    assert [tuple(h.shape) for h in emb.id_vit_hidden] == [(5, 8)] * 3
    assert emb.aligned_face.size == (512, 512) and emb.aligned_face.mode == "RGB"
    _, _, right, _ = emb.face_box
    assert right < t1.width / 4  # face 1 is the leftmost person


def test_tiny_encoder_is_deterministic_across_loads(tiny_encoder_dir: Path, t1: Image.Image) -> None:
    a = load_face_encoder(tiny_encoder_dir).encode(t1, face_index=2)
    b = load_face_encoder(tiny_encoder_dir).encode(t1, face_index=2)
    assert torch.equal(a.id_cond, b.id_cond)
    assert all(torch.equal(x, y) for x, y in zip(a.id_vit_hidden, b.id_vit_hidden, strict=True))
    c = load_face_encoder(tiny_encoder_dir).encode(t1, face_index=3)
    assert not torch.equal(a.id_cond, c.id_cond)


def test_fingerprint_depends_on_weights(tiny_encoder: TinyFaceEncoder, tmp_path: Path) -> None:
    write_tiny_face_encoder(tmp_path / "same", **DIMS, seed=3)
    write_tiny_face_encoder(tmp_path / "other", **DIMS, seed=4)
    assert load_face_encoder(tmp_path / "same").fingerprint == tiny_encoder.fingerprint
    assert load_face_encoder(tmp_path / "other").fingerprint != tiny_encoder.fingerprint


def test_fingerprint_follows_the_encoder_code_version(
    tiny_encoder: TinyFaceEncoder, tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingredients_model import faces

    monkeypatch.setattr(faces, "ENCODER_CODE_VERSION", "next")
    assert load_face_encoder(tiny_encoder_dir).fingerprint != tiny_encoder.fingerprint


def test_face_choice_default_is_top_score_and_bad_index_errors(
    tiny_encoder: TinyFaceEncoder, t1: Image.Image
) -> None:
    from ingredients_model.face_tools import detector_rows

    rows = detector_rows(np.asarray(t1)[:, :, ::-1])
    assert len(rows) == 6 and np.all(np.diff(rows[:, 4]) <= 0)  # sorted by score, as RetinaFace's
    emb = tiny_encoder.encode(t1)
    assert emb.face_box == tuple(float(v) for v in rows[0, :4])  # the highest-scoring face, as released
    by_box = tiny_encoder.encode(t1, face_box=tuple(rows[3, :4] + 4))  # a box near face row 3
    assert by_box.face_box == tuple(float(v) for v in rows[3, :4])
    with pytest.raises(NoFaceError, match="6 face"):
        tiny_encoder.encode(t1, face_index=6)
    with pytest.raises(NoFaceError, match="overlaps"):
        tiny_encoder.encode(t1, face_box=(0, 0, 10, 10))


def test_face_box_is_in_input_pixels_when_the_encoder_downsizes(
    tiny_encoder: TinyFaceEncoder, t1_jpg: Path, t1: Image.Image
) -> None:
    full = Image.open(t1_jpg).convert("RGB")  # 1280x886: the encoder downsizes it to 1024x708 itself
    small = tiny_encoder.encode(t1, face_index=2)
    large = tiny_encoder.encode(full, face_box=tuple(v * 1.25 for v in small.face_box))
    assert torch.equal(small.id_cond, large.id_cond)
    sx, sy = 1280 / 1024, 886 / 708
    x0, y0, x1, y1 = small.face_box
    assert large.face_box == pytest.approx((x0 * sx, y0 * sy, x1 * sx, y1 * sy), rel=1e-6)


def test_no_face_raises(tiny_encoder: TinyFaceEncoder) -> None:
    blank = Image.new("RGB", (300, 200), (120, 160, 200))
    with pytest.raises(NoFaceError, match="no face"):
        tiny_encoder.encode(blank)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_identity_canvas_layout(n: int) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 10, 10)]
    faces = [Image.new("RGB", (512, 512), colours[i]) for i in range(n)]
    canvas = compose_identity_canvas(faces)
    assert canvas.size == (720, 480) and canvas.mode == "RGB"
    side = min(720 // n, 480)
    x0, y = (720 - n * side) // 2, (480 - side) // 2
    array = np.asarray(canvas)
    for i in range(n):
        cx, cy = x0 + i * side + side // 2, y + side // 2
        assert tuple(array[cy, cx]) == colours[i]
    assert tuple(array[2, 2]) == (255, 255, 255)
    if n == 2:  # the released layout: two 360x360 faces side by side
        assert (side, x0, y) == (360, 0, 60)
        assert tuple(array[30, 360]) == (255, 255, 255)


def test_identity_canvas_needs_a_face() -> None:
    with pytest.raises(IngredientsError):
        compose_identity_canvas([])


def test_released_encoder_reports_every_missing_file(tmp_path: Path) -> None:
    folder = tmp_path / "model" / "face_encoder"
    (folder / "models" / "antelopev2").mkdir(parents=True)
    (folder / "models" / "antelopev2" / "glintr100.onnx").write_bytes(b"x")
    assert "models/antelopev2/glintr100.onnx" not in missing_face_encoder_files(folder)
    with pytest.raises(IngredientsError) as info:
        load_face_encoder(folder)
    message = str(info.value)
    for name in RELEASED_FACE_ENCODER_FILES:
        assert (name in message) == (name != "models/antelopev2/glintr100.onnx")
    assert f"into {tmp_path / 'model'}" in message and "storyreel" not in message
    assert isinstance(info.value, MissingWeightsError) and info.value.model_dir == tmp_path / "model"
    assert "facexlib" in message  # the [gpu] extra is absent from the test environment
    assert "unrestricted" not in message  # this torch loads weights only


def test_unknown_encoder_type(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"type": "mystery"}')
    with pytest.raises(IngredientsError, match="mystery"):
        load_face_encoder(tmp_path)


def test_released_arcface_path_through_insightface_model_zoo(tmp_path: Path, t1: Image.Image) -> None:
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    from ingredients_model.face_tools import detect_faces, face_landmarks

    onnx_path = tmp_path / "glintr100.onnx"
    random_arcface_onnx(onnx_path)
    embedder = ArcFaceEmbedder(onnx_path, device="cpu")
    assert isinstance(embedder.model, ArcFaceONNX)
    bgr = np.asarray(t1)[:, :, ::-1].copy()
    boxes = detect_faces(t1)
    # dlib's 5 points (eye corners, nose) give a 5-point layout close enough to drive norm_crop
    five = face_landmarks(t1, boxes[0], points=68)[[36, 45, 30, 48, 54]]
    emb = embedder.embed_keypoints(bgr, five)
    assert emb.shape == (512,) and emb.dtype == np.float32 and np.isfinite(emb).all()
    again = embedder.embed_keypoints(bgr, five)
    np.testing.assert_array_equal(emb, again)
    other = embedder.embed_keypoints(bgr, face_landmarks(t1, boxes[3], points=68)[[36, 45, 30, 48, 54]])
    assert not np.allclose(emb, other)
    crop = np.full((512, 512, 3), 128, dtype=np.uint8)
    assert embedder.embed_crop(crop).shape == (512,)


def test_onnx_providers_pin_each_process_to_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    from ingredients_model.faces import insightface_ctx_id, onnx_providers

    assert onnx_providers("cpu") == ["CPUExecutionProvider"] and insightface_ctx_id("cpu") == -1
    assert onnx_providers("cuda:3") == ["CPUExecutionProvider"]  # this onnxruntime build has no CUDA
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    cuda = ("CUDAExecutionProvider", {"device_id": 3})
    assert onnx_providers(torch.device("cuda:3")) == [cuda, "CPUExecutionProvider"]
    assert insightface_ctx_id("cuda:3") == 3


def test_arcface_blob_is_insightfaces(tmp_path: Path) -> None:
    """Our ArcFace input blob and embedding equal insightface's own ``get_feat`` on a 512 crop."""
    onnx_path = tmp_path / "glintr100.onnx"
    random_arcface_onnx(onnx_path)
    embedder = ArcFaceEmbedder(onnx_path, device="cpu")
    crop = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    assert embedder.input_blob(crop).shape == (1, 3, 112, 112)
    np.testing.assert_array_equal(embedder.embed_crop(crop), embedder.model.get_feat(crop).reshape(-1))


def test_torch_load_safety_probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ingredients_model.faces import torch_load_is_safe

    assert torch_load_is_safe()  # torch >= 2.6 loads weights only by default
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    assert not torch_load_is_safe()
    with pytest.raises(IngredientsError) as info:
        load_face_encoder(tmp_path)
    assert "unrestricted" in str(info.value) and "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" in info.value.hint


def test_tiny_encoder_dtype(tiny_encoder_dir: Path, tiny_encoder: TinyFaceEncoder, t1: Image.Image) -> None:
    half = load_face_encoder(tiny_encoder_dir, dtype=torch.bfloat16).encode(t1, face_index=1)
    full = tiny_encoder.encode(t1, face_index=1)
    assert half.id_cond.dtype == torch.float32
    assert torch.allclose(half.id_cond, full.id_cond, atol=0.05) and not torch.equal(
        half.id_cond, full.id_cond
    )
