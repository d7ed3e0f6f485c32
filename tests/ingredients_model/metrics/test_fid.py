import numpy as np
import pytest
from PIL import Image

from ingredients_model.errors import IngredientsError
from ingredients_model.metrics.fid import (
    TorchFeatureExtractor,
    fid,
    fid_from_features,
    frechet_distance,
    inception_extractor,
)
from ingredients_model.metrics.tiny import TinyFeatureNet


def test_frechet_distance_closed_forms():
    d = 4
    eye = np.eye(d)
    mu = np.array([1.0, 2.0, 0.0, -1.0])
    assert frechet_distance(np.zeros(d), eye, mu, eye) == pytest.approx(mu @ mu)
    # same mean, covariances a²I and b²I: d (a − b)²
    assert frechet_distance(np.zeros(d), 4 * eye, np.zeros(d), 9 * eye) == pytest.approx(d * (2 - 3) ** 2)
    assert frechet_distance(mu, 2 * eye, mu, 2 * eye) == pytest.approx(0.0, abs=1e-9)


def test_fid_from_features_samples():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3)) + np.array([3.0, 0.0, 0.0])
    assert fid_from_features(a, b) == pytest.approx(9.0, rel=0.05)
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fid_singular_covariance_few_samples_is_finite():
    rng = np.random.default_rng(1)
    value = fid_from_features(rng.normal(size=(3, 64)), rng.normal(size=(5, 64)))
    assert np.isfinite(value) and value > 0


def _images(seed: int, n: int, bright: bool) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    base = 180 if bright else 40
    return [
        Image.fromarray(rng.integers(base - 40, base + 40, (40, 36, 3)).astype(np.uint8)) for _ in range(n)
    ]


def test_fid_on_images_with_tiny_feature_net():
    extractor = TorchFeatureExtractor(TinyFeatureNet(), size=32)
    same = fid(_images(0, 6, True), _images(1, 6, True), extractor)
    different = fid(_images(0, 6, True), _images(2, 6, False), extractor)
    assert np.isfinite(same) and np.isfinite(different)
    assert 0 <= same < different
    assert extractor(_images(3, 2, True)).shape == (2, 64)


def test_fid_needs_two_images_per_side():
    with pytest.raises(IngredientsError, match="at least 2"):
        fid(_images(0, 1, True), _images(1, 3, True), TorchFeatureExtractor(TinyFeatureNet(), size=32))


def test_inception_weights_missing_names_the_file(tmp_path):
    with pytest.raises(IngredientsError, match=r"weights-inception-2015-12-05-6726825d.pth") as err:
        inception_extractor(tmp_path)
    assert "torch-fidelity" in err.value.hint
