"""Mask building: box masks, label maps, latent-grid downsampling, SAM on a tiny random model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ingredients_model.training.data import ResumableSampler, interpolate_boxes
from ingredients_model.training.masks import (
    SamMasker,
    box_scores,
    downsample_labels,
    label_coverage,
    labels_from_scores,
    latent_frame_groups,
    sam_labels,
)


def test_box_labels_and_overlap() -> None:
    scores = box_scores(np.array([[0, 0, 10, 10], [5, 5, 9, 9]]), 12, 12)
    labels = labels_from_scores(scores, 0.0)
    assert labels[0, 0] == 0 and labels[6, 6] == 1  # the smaller box is in front
    assert labels[11, 11] == -1 and labels[10, 0] == -1


def test_sam_labels_fall_back_to_boxes_for_empty_masks() -> None:
    logits = torch.full((2, 8, 8), -5.0)
    logits[0, :4, :4] = 3.0  # person 0 found, person 1 empty
    boxes = labels_from_scores(box_scores(np.array([[0, 0, 6, 6], [4, 4, 8, 8]]), 8, 8), 0.0)
    assert set(sam_labels(logits, -2.0).unique().tolist()) == {-1, 0}
    labels = sam_labels(logits, -2.0, boxes)
    assert (labels[:4, :4] == 0).all() and (labels[4:, 4:] == 1).all() and labels[0, 7] == -1


def test_downsample_labels_keeps_the_old_cases() -> None:
    labels = torch.full((9, 32, 48), -1)
    labels[:, :, :16] = 0
    labels[:, 16:, 32:] = 1
    small = downsample_labels(labels, 2, (3, 4, 6))
    assert small.shape == (3, 4, 6)
    assert (small[:, :, :2] == 0).all() and (small[:, 2:, 4:] == 1).all() and (small[:, :2, 2:] == -1).all()


def test_downsample_labels_by_area_coverage() -> None:
    """One latent frame, one token of 10 x 10 pixels per case: the coverage decides, not a point sample."""
    labels = torch.full((1, 10, 40), -1)
    labels[0, :, 0:4] = 0  # token 0: 40 % person 0 (off-centre, so the centre pixel is background)
    labels[0, :, 10:12] = 0  # token 1: 20 % person 0 -> background (below 25 %)
    labels[0, :, 20:23] = 0  # token 2: 30 % person 0 and 40 % person 1 -> person 1
    labels[0, :, 23:27] = 1
    labels[0, :5, 30:40] = 1  # token 3: the top half is person 1
    small = downsample_labels(labels, 2, (1, 1, 4), coverage=0.25)
    assert small[0, 0].tolist() == [0, -1, 1, 1]
    assert downsample_labels(labels, 2, (1, 1, 4), coverage=0.45)[0, 0].tolist() == [-1, -1, -1, 1]
    coverage = label_coverage(labels, 2, (1, 1, 4))
    expected = [[0.4, 0.2, 0.3, 0.0], [0.0, 0.0, 0.4, 0.5]]
    np.testing.assert_allclose(coverage[0, :, 0].numpy(), expected, atol=1e-6)


def test_latent_frames_follow_the_causal_vae() -> None:
    """Latent frame 0 is video frame 0 alone; latent frame f covers frames 4f-3..4f."""
    assert [list(g) for g in latent_frame_groups(9)] == [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
    labels = torch.full((9, 8, 8), -1)
    labels[0] = 0  # only in the first frame
    labels[1:3] = 1  # half of latent frame 1's frames
    small = downsample_labels(labels, 2, (3, 1, 1))
    assert small[:, 0, 0].tolist() == [0, 1, -1]
    with pytest.raises(ValueError, match="causal VAE"):
        latent_frame_groups(8)


def test_interpolate_boxes() -> None:
    boxes = interpolate_boxes({0: [0, 0, 10, 10], 4: [4, 0, 14, 10]}, [0, 2, 4, 8])
    assert boxes[:, 0].tolist() == [0, 2, 4, 4]


def test_read_frames_start_and_stride(tmp_path: Path) -> None:
    from ingredients_model.training.prepare import SkipClip, read_frames

    from .conftest import write_video

    write_video(tmp_path / "v.mp4", [np.full((16, 16, 3), 10 * t, np.uint8) for t in range(12)])
    frames = read_frames(tmp_path / "v.mp4", 3, stride=2, start=5)
    assert [int(f.mean().round()) for f in frames] == [50, 70, 90]
    with pytest.raises(SkipClip, match="need 4"):
        read_frames(tmp_path / "v.mp4", 4, stride=2, start=6)


def test_sampler_resumes_exactly() -> None:
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    full = take(ResumableSampler(5, seed=3, rank=1, world=2), 12)
    assert take(ResumableSampler(5, seed=3, rank=1, world=2, start=7), 5) == full[7:]
    first_epoch = take(ResumableSampler(5, seed=3), 10)
    assert sorted(i for i, _ in first_epoch[:5]) == list(range(5))
    # the key that picks the reference draw changes from epoch to epoch (4 draws: not always the same one)
    draws = {i: set() for i in range(5)}
    for i, key in take(ResumableSampler(5, seed=3), 40):
        draws[i].add(key % 4)
    assert all(len(d) > 1 for d in draws.values())


def test_sam_masker_runs_on_cpu(tiny_sam_dir: Path) -> None:
    masker = SamMasker(tiny_sam_dir)
    frames = [Image.fromarray(np.full((40, 60, 3), 90 + 10 * t, np.uint8)) for t in range(3)]
    boxes = np.array([[[2, 2, 20, 30], [30, 5, 58, 38]]] * 3, float)
    logits = masker.logits(frames, boxes, batch_frames=2)
    assert logits.shape == (3, 2, 40, 60) and torch.isfinite(logits).all()
