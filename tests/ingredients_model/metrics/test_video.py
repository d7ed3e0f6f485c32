import numpy as np
import pytest
from PIL import Image

from ingredients_model.errors import IngredientsError
from ingredients_model.metrics.video import (
    count_frames,
    sample_array_frames,
    sample_indices,
    sample_video_frames,
    write_video,
)


def test_sample_indices():
    assert sample_indices(49, 16)[0] == 0 and sample_indices(49, 16)[-1] == 48
    assert len(sample_indices(49, 16)) == 16
    assert sample_indices(5, 16) == [0, 1, 2, 3, 4]
    assert sample_indices(0, 4) == [] and sample_indices(10, 0) == []


def _ramp(frames: int = 12, height: int = 32, width: int = 48) -> np.ndarray:
    """Frame i is a flat grey of level 20 * i, easy to recognise after lossy encoding."""
    return np.stack([np.full((height, width, 3), 20 * i, dtype=np.uint8) for i in range(frames)])


def test_write_and_sample_video_roundtrip(tmp_path):
    path = write_video(_ramp(), tmp_path / "clip.mp4", fps=8)
    assert path.is_file() and not list(tmp_path.glob("*.partial*"))
    assert count_frames(path) == 12
    frames = sample_video_frames(path, num=4)
    assert [f.size for f in frames] == [(48, 32)] * 4
    levels = [float(np.asarray(f).mean()) for f in frames]
    expected = [20 * i for i in sample_indices(12, 4)]
    np.testing.assert_allclose(levels, expected, atol=6)


def test_sample_array_frames_float_and_pil():
    floats = _ramp(6).astype(np.float32) / 255.0
    frames = sample_array_frames(floats, num=3)
    assert len(frames) == 3 and np.asarray(frames[-1]).mean() == pytest.approx(100, abs=1)
    pils = [Image.fromarray(a) for a in _ramp(6)]
    assert len(sample_array_frames(pils, num=2)) == 2
    with pytest.raises(ValueError):
        sample_array_frames(np.zeros((2, 8, 8)), num=1)


def test_missing_and_broken_videos(tmp_path):
    with pytest.raises(IngredientsError, match="video not found"):
        sample_video_frames(tmp_path / "nope.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(IngredientsError, match="cannot"):
        sample_video_frames(broken)
