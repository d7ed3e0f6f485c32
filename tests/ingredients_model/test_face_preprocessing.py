"""ingredients_model.face_preprocessing: face choice, alignment and the encoders' inputs, on synthetic data
(the comparison with the released code's outputs is test_face_golden.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ingredients_model import face_preprocessing as fp
from ingredients_model.face_preprocessing import NoFaceError, choose_face, detections_from_rows


def _row(box: tuple[float, float, float, float], score: float) -> list[float]:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    points = [(0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8)]
    return [*box, score, *(v for px, py in points for v in (x0 + px * w, y0 + py * h))]


ROWS = np.array(
    [
        _row((300, 0, 400, 100), 0.99),  # centre 350, highest score
        _row((0, 0, 50, 50), 0.98),  # centre 25, smallest
        _row((150, 0, 350, 200), 0.975),  # centre 250, largest
    ],
    dtype=np.float32,
)


def test_detections_from_rows_keep_the_detectors_layout() -> None:
    detections = detections_from_rows(ROWS)
    assert [d.score for d in detections] == pytest.approx([0.99, 0.98, 0.975])
    assert detections[1].box == (0.0, 0.0, 50.0, 50.0)
    assert detections[1].landmarks.shape == (5, 2) and detections[1].landmarks.dtype == np.float32
    np.testing.assert_allclose(detections[1].landmarks[0], (15, 20))
    assert detections_from_rows(np.zeros((0, 15), np.float32)) == []
    with pytest.raises(ValueError, match=r"\[N, 15\]"):
        detections_from_rows(np.zeros((2, 5)))


def test_choice_by_score_by_left_to_right_number_and_by_box() -> None:
    detections = detections_from_rows(ROWS)
    assert choose_face(detections) == 0  # the released choice: the highest score, not the largest
    assert choose_face(detections[::-1]) == 2  # wherever it sits in the list
    assert [choose_face(detections, face_index=i) for i in range(3)] == [1, 2, 0]
    assert choose_face(detections, face_box=(160, 10, 340, 190)) == 2
    with pytest.raises(NoFaceError, match="3 face"):
        choose_face(detections, face_index=3)
    with pytest.raises(NoFaceError, match="overlaps"):
        choose_face(detections, face_box=(600, 600, 700, 700))
    with pytest.raises(NoFaceError, match="no face"):
        choose_face([])
    with pytest.raises(ValueError):
        choose_face(detections, face_index=0, face_box=(0, 0, 1, 1))


def test_alignment_maps_the_landmarks_onto_the_template() -> None:
    ys, xs = np.mgrid[0:600, 0:800]
    photo = np.stack([xs * 0.25, ys * 0.4, np.full_like(xs, 7.0)], axis=-1).round().astype(np.uint8)
    # landmarks = the template rotated by 20°, scaled by 0.5 and shifted: the warp must undo exactly that
    angle, scale, shift = np.deg2rad(20), 0.5, np.array([250.0, 120.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (fp.FACE_TEMPLATE_512 @ rotation.T + shift).astype(np.float32)
    crop = fp.align_to_template(photo, landmarks)
    assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8
    # crop pixel (x, y) shows the photo at the landmarks' transform of (x, y): here a gradient encodes it
    for x, y in [(256, 256), (100, 400), (400, 120), (20, 30)]:
        px, py = rotation @ np.array([x, y]) + shift
        assert abs(int(crop[y, x, 0]) - px * 0.25) <= 1 and abs(int(crop[y, x, 1]) - py * 0.4) <= 1
    # where the warp leaves the photo, facexlib's grey border
    far = (np.array([[0, 0], [60, 0], [30, 40], [5, 60], [55, 60]], np.float32) - 500).astype(np.float32)
    assert tuple(fp.align_to_template(photo, far)[0, 0]) == fp.ALIGN_BORDER_BGR


def test_alignment_of_an_upright_template_face_is_the_identity() -> None:
    photo = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    crop = fp.align_to_template(photo, fp.FACE_TEMPLATE_512.astype(np.float32))
    np.testing.assert_array_equal(crop, photo)


def test_arcface_input_is_rgb_resized_and_centred() -> None:
    face = np.zeros((512, 512, 3), np.uint8)
    face[..., 0] = 255  # blue in BGR
    blob = fp.arcface_input(face, (112, 112), 127.5, 127.5)
    assert blob.shape == (1, 3, 112, 112) and blob.dtype == np.float32
    np.testing.assert_allclose(blob[0, :, 50, 50], [-1.0, -1.0, 1.0])  # RGB order, (x - 127.5) / 127.5


def test_clip_input_matches_a_direct_computation() -> None:
    face = np.random.default_rng(2).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    x = fp.clip_input(face, 336)
    assert x.shape == (1, 3, 336, 336) and x.dtype == torch.float32
    rgb = torch.from_numpy(face[:, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    resized = torch.nn.functional.interpolate(rgb, (336, 336), mode="bicubic", antialias=True)
    expected = (resized - torch.tensor(fp.CLIP_MEAN)[:, None, None]) / torch.tensor(fp.CLIP_STD)[
        :, None, None
    ]
    torch.testing.assert_close(x, expected, rtol=0, atol=0)


def test_detect_and_align_uses_the_detectors_output() -> None:
    photo = np.random.default_rng(3).integers(0, 256, (400, 500, 3), dtype=np.uint8)
    seen = []

    def detector(bgr: np.ndarray) -> np.ndarray:
        seen.append(bgr)
        return ROWS

    aligned = fp.detect_and_align(photo, detector, face_index=0)
    assert seen[0] is photo and aligned.detection.box == (0.0, 0.0, 50.0, 50.0)
    assert len(aligned.detections) == 3 and aligned.crop_bgr.shape == (512, 512, 3)
