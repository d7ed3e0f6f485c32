"""``protocol: released`` rule by rule on crafted frames, beside ``protocol: strict`` on the same faces.

Faces are textured squares (``conftest.frame``), found by a stand-in detector inside the real insightface
``FaceAnalysis`` loaded from a tiny buffalo_l folder, and embedded by insightface's ``ArcFaceONNX`` on a
random ONNX graph; a face of the same identity and size gives the same embedding wherever it is.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ingredients_model.errors import IngredientsError
from ingredients_model.metrics import released
from ingredients_model.metrics.face_similarity import ArcFaceBackend, clip_face_similarity
from ingredients_model.metrics.video import write_video
from tests.helpers.face_models import SquareFaceDetector, frame

A, B, C, D = 0, 1, 2, 3
SIZE = 80


def test_frame_index_rules() -> None:
    # face_sim_fid.py: np.linspace(0, total - 1, 24, dtype=int): truncated, repeats kept
    assert released.face_frame_indices(49) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 25, 27, 29, 31, 33,
                                               35, 37, 39, 41, 43, 45, 48]  # fmt: skip
    assert released.face_frame_indices(10) == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 5, 6, 6, 7, 7, 7,
                                               8, 8, 9]  # fmt: skip
    # clip_score.py: int(i * total / 24); never reaches the last frame of a 49-frame clip
    assert released.clip_frame_indices(49) == list(range(0, 48, 2))
    assert released.clip_frame_indices(10)[:6] == [0, 0, 0, 1, 1, 2]
    assert released.face_frame_indices(0) == released.clip_frame_indices(0) == []


def test_buffalo_l_lookup_and_loading(buffalo_l_dir, tmp_path, monkeypatch) -> None:
    model_dir = buffalo_l_dir.parents[2]
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "home"))
    assert released.find_buffalo_l(model_dir=model_dir) == buffalo_l_dir.resolve()
    assert released.find_buffalo_l(face_models=buffalo_l_dir) == buffalo_l_dir.resolve()
    assert released.find_buffalo_l(face_models=buffalo_l_dir.parents[1]) == buffalo_l_dir.resolve()
    with pytest.raises(IngredientsError, match=r"det_10g\.onnx, w600k_r50\.onnx") as err:
        released.find_buffalo_l(model_dir=tmp_path)
    assert "face_encoder/models/buffalo_l" in err.value.hint and str(tmp_path / "home") in err.value.message
    # the real loading path: FaceAnalysis on the folder, detector + recognizer, det_size 320
    app = released.load_face_analysis(buffalo_l_dir)
    assert set(app.models) == {"detection", "recognition"} and tuple(app.det_size) == (320, 320)
    bright = np.zeros((320, 320, 3), np.uint8)
    bright[64:192, 64:192] = 230
    faces = app.get(bright)
    assert faces and all(f.embedding.shape == (512,) for f in faces)
    assert app.get(np.zeros((320, 320, 3), np.uint8)) == []


def _embedding(app, identity: int, size: int = SIZE, x: int = 100, y: int = 60) -> np.ndarray:
    (face,) = released.frame_faces(app, frame([(identity, x, y, size)]))
    return face.embedding


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_reference_is_the_largest_face_and_tight_crops_are_padded(square_app) -> None:
    two = frame([(B, 20, 30, 60), (A, 150, 40, SIZE)])
    ref = released.reference_face(square_app, two)
    assert _cos(ref.embedding, _embedding(square_app, A)) == pytest.approx(1.0, abs=1e-6)
    assert ref.box == (150.0, 40.0, 230.0, 120.0) and ref.aligned.shape == (224, 224, 3)
    # a crop with the face touching the border is found only on the grey-padded copy; the keypoints are
    # shifted back, so the aligned face is the same as on the roomy photo
    tight = two[40:120, 150:230]
    again = released.reference_face(square_app, tight)
    assert again.box == (0.0, 0.0, 80.0, 80.0)
    assert _cos(again.embedding, ref.embedding) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(again.aligned, ref.aligned)
    with pytest.raises(IngredientsError, match="no face found"):
        released.reference_face(square_app, np.zeros((64, 64, 3), np.uint8))


CASES = {
    # name: (references, frames [faces (identity, x, y, size)], inverted identities)
    "both present": ([A, B], [[(A, 20, 40, SIZE), (B, 200, 40, SIZE)]], ()),
    "B missing": ([A, B], [[(A, 20, 40, SIZE)]], ()),
    "stranger C instead of B": ([A, B], [[(A, 20, 40, SIZE), (C, 200, 40, SIZE)]], ()),
    "A only third largest": ([A, B], [[(C, 10, 10, 100), (D, 120, 10, 90), (A, 230, 100, SIZE)]], ()),
    "A's negative": ([A], [[(A, 20, 40, SIZE)]], (A,)),
    "one frame without faces": ([A], [[(A, 20, 40, SIZE)], []], ()),
}


def _strict_backend(app) -> ArcFaceBackend:
    return ArcFaceBackend.from_models(SquareFaceDetector(), app.models["recognition"])


def test_face_sim_rules_on_crafted_frames(square_app) -> None:
    emb = {k: _embedding(square_app, k) for k in (A, B, C, D)}
    strict = _strict_backend(square_app)
    figures = {}
    for name, (ids, faces, inverted) in CASES.items():
        refs = [released.reference_face(square_app, frame([(k, 100, 60, SIZE)])) for k in ids]
        frames = [frame(f, inverted=inverted) for f in faces]
        got = released.score_frames(square_app, refs, frames)
        ours = clip_face_similarity(strict, [r.embedding for r in refs], [Image.fromarray(f) for f in frames])
        figures[name] = (got.face_sim, ours.summary.face_sim)
        if name == "both present":
            assert got.face_sim == pytest.approx(1.0, abs=1e-6) and ours.summary.face_sim == pytest.approx(
                1.0
            )
        elif name == "B missing":  # released: best pair only; strict: every person must be there
            assert got.face_sim == pytest.approx(1.0, abs=1e-6) and ours.summary.face_sim == 0.0
        elif name == "stranger C instead of B":
            assert got.face_sim == pytest.approx(1.0, abs=1e-6)
            assert ours.summary.face_sim == pytest.approx(max(0.0, _cos(emb[B], emb[C])), abs=1e-6)
        elif name == "A only third largest":  # released keeps the 2 largest faces (C, D); strict sees A
            big = [_embedding(square_app, C, 100, 10, 10), _embedding(square_app, D, 90, 120, 10)]
            expected = max(_cos(emb[r], f) for r in (A, B) for f in big)
            assert got.face_sim == pytest.approx(expected, abs=1e-6) and got.face_sim < 0.5
            assert ours.frames[0].similarity_of(0) == pytest.approx(1.0, abs=1e-6)
        elif name == "A's negative":  # no clamp in released; strict clamps at 0
            assert got.face_sim == pytest.approx(-1.0, abs=1e-6) and ours.summary.face_sim == 0.0
        else:  # the script would stop on the faceless frame; released leaves it out, strict scores it 0
            assert got.frames_without_faces == 1 and got.per_frame_face_sim[1] is None
            assert got.face_sim == pytest.approx(1.0, abs=1e-6)
            assert ours.summary.face_sim == pytest.approx(0.5)
    print("\nface sim on crafted frames (released, strict):")
    for name, (a, b) in figures.items():
        print(f"  {name:26s} {a:+.3f}  {b:.3f}")


class _AveragePool(torch.nn.Module):
    """Stand-in for torchvision's Inception-v3 in CI: 4x4 average colours of the 299 input (48-d)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1) * 100


def test_fid_rules_on_crafted_frames(square_app) -> None:
    net = _AveragePool()
    features = released.ReleasedFeatureExtractor(net)
    refs = [released.reference_face(square_app, frame([(k, 100, 60, SIZE)])) for k in (A, B)]
    # load_image: PIL bilinear resize to 299, ToTensor (0..1), no normalisation
    features([refs[0].aligned])
    expected_input = np.asarray(Image.fromarray(refs[0].aligned).resize((299, 299), Image.BILINEAR)) / 255.0
    np.testing.assert_allclose(net.seen[-1][0].permute(1, 2, 0).numpy(), expected_input, atol=1e-6)

    phi = {k: features([released.frame_faces(square_app, frame([(k, 100, 60, SIZE)]))[0].aligned])[0] for k in
           (A, B, C)}  # fmt: skip
    frames = [frame([(A, 20, 40, SIZE), (C, 200, 40, SIZE)]), frame([(C, 20, 40, SIZE)])]
    got = released.score_frames(square_app, refs, frames, features)
    # per frame: the minimum squared L2 over (reference, face) pairs; then the mean over frames
    second = min(float(((phi[r] - phi[C]) ** 2).sum()) for r in (A, B))
    assert got.per_frame_fid[0] == pytest.approx(0.0, abs=1e-6)
    assert got.per_frame_fid[1] == pytest.approx(second, rel=1e-5)
    assert got.fid == pytest.approx(second / 2, rel=1e-5)
    print(
        f"\nreleased per-frame FID (stand-in features): "
        f"{got.per_frame_fid[0]:.3f}, {got.per_frame_fid[1]:.3f}"
    )
    # without a feature network: no FID, Face Sim unchanged
    assert released.score_frames(square_app, refs, frames).fid is None


def test_inception_weights_lookup(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(IngredientsError, match=released.INCEPTION_FILE) as err:
        released.find_inception_weights()
    assert "[gpu]" in err.value.hint
    cached = tmp_path / "torch" / "hub" / "checkpoints" / released.INCEPTION_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the weights")
    assert released.find_inception_weights() == cached
    assert released.find_inception_weights(cached.parent) == cached
    with pytest.raises(IngredientsError, match="damaged or not torchvision's file"):
        released.check_weights_hash(cached)


def test_released_clip_score_is_bgr_logits_mean_without_clamp(tmp_path) -> None:
    from ingredients_model.metrics.clip_score import ClipScorer
    from ingredients_model.metrics.tiny import write_tiny_clip_folder

    scorer = ClipScorer(write_tiny_clip_folder(tmp_path / "clip"))
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 255, (48, 64, 3)).astype(np.uint8) for _ in range(5)]
    for channel in range(3):
        rgb[channel][..., channel] = 255  # strongly coloured frames: channel order matters
    bgr = [f[:, :, ::-1] for f in rgb]
    text = "a woman laughing at a cafe table"
    value = scorer.released_score(bgr, text)
    images = [np.ascontiguousarray(f) for f in bgr]
    inputs = scorer.processor(text=[text], images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        image = scorer.model.get_image_features(pixel_values=inputs["pixel_values"])
        words = scorer.model.get_text_features(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        )
        image = getattr(image, "pooler_output", image)
        words = getattr(words, "pooler_output", words)
        cos = torch.nn.functional.cosine_similarity(image, words)
        expected = float((scorer.model.logit_scale.exp() * cos).mean())
    assert value == pytest.approx(expected, abs=1e-4)
    assert value != pytest.approx(scorer.released_score(rgb, text), abs=1e-3)  # BGR is not RGB
    strict = scorer.score([Image.fromarray(f) for f in rgb], text)
    scale = float(scorer.model.logit_scale.detach().exp())
    print(
        f"\nCLIPScore, tiny random CLIP: released {value:+.3f} (logit scale {scale:.2f}), strict {strict:.3f}"
    )
    assert strict >= 0


def test_video_sampling_reads_the_scripts_frames(tmp_path, square_app) -> None:
    """Frame t of the clip shows face A when t is one of the 24 face-metric indices, else nothing: every
    sampled frame has a face. The CLIP path sees exactly the clip-score indices, as BGR."""
    total = 49
    face_idx = set(released.face_frame_indices(total))
    frames = np.stack([frame([(A, 20, 40, SIZE)]) if t in face_idx else frame([]) for t in range(total)])
    frames[:, :16, :16, 0] = np.arange(total)[:, None, None] * 5  # frame number, in red, in the corner
    video = write_video(frames, tmp_path / "clip.mp4")
    refs = [released.reference_face(square_app, frame([(A, 100, 60, SIZE)]))]
    result = released.score_video(square_app, refs, video)
    assert result.frames == 24 and result.frames_without_faces == 0
    assert result.face_sim > 0.8  # H.264 changes the noise texture

    class Capture:
        def released_score(self, frames, text):
            self.frames, self.text = frames, text
            return 0.0

    capture = Capture()
    released.clip_score_video(capture, video, "two people")
    corner = np.stack([f[4:12, 4:12].reshape(-1, 3).mean(0) for f in capture.frames])  # BGR
    assert len(corner) == 24 and corner[:, 0].max() < 20  # blue stays dark: the channels were swapped
    np.testing.assert_allclose(corner[:, 2], [5 * i for i in released.clip_frame_indices(total)], atol=4)
