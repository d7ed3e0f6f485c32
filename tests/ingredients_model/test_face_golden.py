"""Our face preprocessing against the public Ingredients code's outputs (tests/fixtures/face_golden.*).

The fixtures were recorded by ``scripts/record_face_golden.py`` running the released
``process_face_embeddings_split`` (with ``infer.py``'s photo loading) on insightface's ``t1.jpg`` and
a close-up of scikit-image's astronaut, with stand-in networks: the detector rows recorded there are
fed to our side here; the same random ArcFace ONNX graph and the same stand-in EVA-CLIP run on both
sides. uint8 images must match exactly (sha256 of the full arrays), float tensors within 1e-5 relative
(a strided subsample elementwise, the full tensors by their L1/L2 norms).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import load_file

from ingredients_model import face_preprocessing as fp
from ingredients_model.faces import ArcFaceEmbedder, ReleasedFaceEncoder, compose_identity_canvas
from ingredients_model.photos import load_photo
from tests.helpers.face_stand_ins import StandInClip, golden_photos, random_arcface_onnx

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
META = json.loads((FIXTURES / "face_golden.json").read_text())
REF = load_file(str(FIXTURES / "face_golden.safetensors"))
RTOL = 1e-5


def sha256(array: np.ndarray) -> str:  # as scripts/record_face_golden.py computes it
    array = np.ascontiguousarray(array)
    return hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()


def assert_close(ours: np.ndarray, ref: np.ndarray, what: str) -> float:
    """Max |ours - ref| relative to max |ref|; fails above RTOL. Returns it (printed for the report)."""
    assert ours.shape == ref.shape, what
    error = float(np.abs(ours.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))
    print(f"{what}: max relative difference {error:.2e}")
    assert error <= RTOL, f"{what}: {error:.2e} > {RTOL}"
    return error


def assert_norms(ours: np.ndarray, ref: dict[str, float], what: str) -> None:
    x = ours.astype(np.float64)
    assert abs(np.abs(x).sum() - ref["l1"]) <= RTOL * ref["l1"], what
    assert abs(np.sqrt((x * x).sum()) - ref["l2"]) <= RTOL * ref["l2"], what


def sub(x: np.ndarray, stride: int, axes: tuple[int, int]) -> np.ndarray:
    index = [slice(None)] * x.ndim
    for axis in axes:
        index[axis] = slice(None, None, stride)
    return x[tuple(index)]


@pytest.fixture(scope="module")
def photo_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    paths = dict(golden_photos(tmp_path_factory.mktemp("golden")))
    return [paths[p["name"]] for p in META["photos"]]


class RecordedDetector:
    """Returns the recorded detector rows, after checking it is shown the very photo the release's
    detector was shown (exact bytes)."""

    def __init__(self, index: int, permutation: list[int] | None = None):
        self.meta = META["photos"][index]
        rows = REF[f"photo{index}.detector_rows"]
        self.rows = rows[permutation] if permutation is not None else rows
        self.calls = 0

    def __call__(self, photo_bgr: np.ndarray) -> np.ndarray:
        self.calls += 1
        assert list(photo_bgr.shape) == self.meta["detector_input_shape"]
        assert sha256(photo_bgr) == self.meta["detector_input_sha256"], "the detector's input differs"
        return self.rows.copy()


@pytest.fixture(scope="module")
def arcface(tmp_path_factory: pytest.TempPathFactory) -> ArcFaceEmbedder:
    path = tmp_path_factory.mktemp("arcface") / "glintr100.onnx"
    random_arcface_onnx(path, META["seeds"]["arcface_onnx"])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == META["arcface_onnx_sha256"]
    return ArcFaceEmbedder(path, "cpu")


def encoder_for(
    index: int, arcface: ArcFaceEmbedder, permutation: list[int] | None = None
) -> ReleasedFaceEncoder:
    clip = StandInClip(META["seeds"]["stand_in_clip"])
    return ReleasedFaceEncoder(RecordedDetector(index, permutation), arcface, clip, fingerprint="golden")


def test_constants_match_the_release() -> None:
    np.testing.assert_array_equal(fp.FACE_TEMPLATE_512, np.array(META["template"]))
    assert tuple(META["clip"]["public_default_mean"]) == fp.CLIP_MEAN
    assert tuple(META["clip"]["public_default_std"]) == fp.CLIP_STD
    assert META["parser_calls"] == 0  # the release loads a face parser but never runs it
    # consisid_eva_clip (what our encoder loads) computes what the public code's EVA-CLIP copy computes
    eva = META["eva_clip_check"]
    assert eva["same_image_size_mean_std"] and eva["max_abs_diff_pooled_and_hidden"] == 0.0
    for photo in META["photos"]:
        assert photo["detection_threshold"] == fp.DETECTION_THRESHOLD


@pytest.mark.parametrize("index", range(len(META["photos"])))
def test_photo_loading_matches_the_release(index: int, photo_paths: list[Path]) -> None:
    """EXIF, RGB and the 1024 px INTER_LANCZOS4 downsizing (t1.jpg is 1280x886): the same bytes."""
    meta = META["photos"][index]
    photo = np.asarray(load_photo(photo_paths[index]))
    assert list(photo.shape) == meta["loaded_shape"]
    assert sha256(photo) == meta["loaded_sha256"]


@pytest.mark.parametrize("index", range(len(META["photos"])))
def test_preprocessing_matches_the_release(
    index: int, photo_paths: list[Path], arcface: ArcFaceEmbedder
) -> None:
    meta, prefix, strides = META["photos"][index], f"photo{index}.", META["subsample_strides"]
    encoder = encoder_for(index, arcface)
    inputs = encoder.prepare(load_photo(photo_paths[index]))
    assert encoder.detector.calls == 1

    # the highest-scoring face, aligned on facexlib's 512 template: the same pixels
    chosen = REF[prefix + "detector_rows"][meta["chosen_row"]]
    assert inputs.aligned.detection.box == tuple(float(v) for v in chosen[:4])
    crop = np.ascontiguousarray(inputs.aligned.crop_bgr[:, :, ::-1])
    np.testing.assert_array_equal(sub(crop, strides["aligned"], (0, 1)), REF[prefix + "aligned_sub"])
    assert sha256(crop) == meta["aligned_sha256"]

    # ArcFace's input blob (get_feat resizes the 512 crop to 112) and its embedding
    assert list(inputs.arcface_blob.shape) == meta["arcface_blob_shape"]
    assert_close(
        sub(inputs.arcface_blob, strides["arcface_blob"], (2, 3)),
        REF[prefix + "arcface_blob_sub"],
        "arcface blob",
    )
    assert_norms(inputs.arcface_blob, meta["arcface_blob_norms"], "arcface blob")

    # EVA-CLIP's input: the colour crop, bicubic to 336, CLIP-normalised
    pixels = inputs.clip_pixels.cpu().numpy()
    assert list(pixels.shape) == meta["clip_input_shape"]
    assert_close(sub(pixels, strides["clip_input"], (2, 3)), REF[prefix + "clip_input_sub"], "EVA-CLIP input")
    assert_norms(pixels, meta["clip_input_norms"], "EVA-CLIP input")

    # the identity features: ArcFace 512 (unnormalised) ⊕ normalised pooled EVA-CLIP, and hidden states
    encoder.detector.calls = 0
    embedding = encoder.encode(load_photo(photo_paths[index]))
    assert_close(embedding.id_cond[:512].numpy(), REF[prefix + "arcface_embedding"], "ArcFace embedding")
    assert_close(embedding.id_cond.numpy(), REF[prefix + "id_cond"], "id_cond")
    for k, hidden in enumerate(embedding.id_vit_hidden):
        assert_close(hidden.numpy(), REF[prefix + f"id_vit_hidden.{k}"], f"id_vit_hidden.{k}")
    assert np.array_equal(np.asarray(embedding.aligned_face), crop)


def test_top_scoring_face_whatever_the_row_order(photo_paths: list[Path], arcface: ArcFaceEmbedder) -> None:
    """The release takes RetinaFace's first face, which is its highest-scoring one; we choose by score."""
    rows = REF["photo0.detector_rows"]
    reversed_order = list(range(len(rows)))[::-1]
    inputs = encoder_for(0, arcface, reversed_order).prepare(load_photo(photo_paths[0]))
    assert inputs.aligned.detection.score == float(rows[:, 4].max())
    assert (
        sha256(np.ascontiguousarray(inputs.aligned.crop_bgr[:, :, ::-1]))
        == META["photos"][0]["aligned_sha256"]
    )


def test_identity_canvas_matches_the_release(photo_paths: list[Path], arcface: ArcFaceEmbedder) -> None:
    faces = [
        encoder_for(i, arcface).encode(load_photo(path)).aligned_face for i, path in enumerate(photo_paths)
    ]
    canvas = np.asarray(compose_identity_canvas(faces))
    np.testing.assert_array_equal(sub(canvas, META["subsample_strides"]["canvas"], (0, 1)), REF["canvas_sub"])
    assert list(canvas.shape) == META["canvas"]["shape"]
    assert sha256(canvas) == META["canvas"]["sha256"]
    assert isinstance(faces[0], Image.Image) and faces[0].size == (512, 512)


def test_stand_in_clip_is_what_the_recording_used() -> None:
    clip = StandInClip(META["seeds"]["stand_in_clip"])
    assert clip.image_size == META["clip"]["image_size"]
    assert tuple(clip.image_mean) == tuple(META["clip"]["mean"])
    x = torch.zeros(1, 3, 336, 336)
    pooled, hidden = clip(x)
    assert [list(h[0].shape) for h in hidden] == META["photos"][0]["id_vit_hidden_shapes"]
    assert pooled.shape == (1, 768)
