"""FID between generated face crops and reference faces.

The Fréchet distance is computed here (``scipy.linalg.sqrtm``, the formulation of pytorch-fid). Features
come from a pluggable :class:`FeatureExtractor`; the default is the FID Inception-v3 (TensorFlow
``inception-2015-12-05`` weights ported to PyTorch) as implemented by **torch-fidelity**
(``FeatureExtractorInceptionV3``, 2048-d pool features), with the weights file read from a local path:
``weights-inception-2015-12-05-6726825d.pth`` from
https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth.
torch-fidelity needs torchvision, so it is imported lazily and belongs to the ``[gpu]`` extra; the CPU
test environment plugs in a small feature net instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import linalg

from ingredients_model.errors import IngredientsError

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_HINT = (
    f"Download {INCEPTION_WEIGHTS_FILE} once from "
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    + INCEPTION_WEIGHTS_FILE
    + " and pass its path "
    "(or a folder holding it); install the [gpu] extra plus torch-fidelity for the Inception network."
)

FeatureExtractor = Callable[[Sequence[Image.Image]], np.ndarray]
"""Maps RGB images to a float array [N, D] of features."""


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] of ``features`` [N, D] (N ≥ 2)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors [N, D], got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """``|mu1 − mu2|² + Tr(S1 + S2 − 2 (S1 S2)^½)`` — Fréchet distance between two Gaussians.

    When the product is near-singular (few samples), ``eps`` is added to the diagonals, as pytorch-fid does.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two distributions have different dimensions")
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"imaginary component {np.max(np.abs(covmean.imag))} in the covariance square root"
            )
        covmean = covmean.real
    value = float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two feature sets [N, D] and [M, D]."""
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


def fid(real: Sequence[Image.Image], fake: Sequence[Image.Image], extractor: FeatureExtractor) -> float:
    """FID between two image sets (e.g. reference faces vs. generated face crops), each with ≥ 2 images."""
    if len(real) < 2 or len(fake) < 2:
        raise IngredientsError(
            f"FID needs at least 2 images per side (got {len(real)} reference, {len(fake)} generated)",
            "Evaluate more cases or more frames.",
        )
    return fid_from_features(extractor(real), extractor(fake))


class TorchFeatureExtractor:
    """Wraps a torch module mapping uint8 images [B, 3, H, W] to features [B, D] (any H, W)."""

    def __init__(self, module, device: str = "cpu", batch_size: int = 32, size: int | None = None):
        self.module = module.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.size = size  # resize images to size x size first (None: all images must share a size)

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        arrays = []
        for image in images:
            image = image.convert("RGB")
            if self.size is not None:
                image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
            arrays.append(np.asarray(image, dtype=np.uint8))
        out = []
        with torch.no_grad():
            for start in range(0, len(arrays), self.batch_size):
                batch = torch.from_numpy(np.stack(arrays[start : start + self.batch_size])).permute(
                    0, 3, 1, 2
                )
                feats = self.module(batch.to(self.device))
                if isinstance(feats, (tuple, list)):
                    feats = feats[0]
                out.append(feats.reshape(feats.shape[0], -1).double().cpu().numpy())
        return np.concatenate(out, axis=0)


def inception_extractor(weights: Path, device: str = "cpu") -> TorchFeatureExtractor:
    """torch-fidelity's FID Inception-v3 (2048-d) with weights from a local file or folder."""
    weights = Path(weights)
    if weights.is_dir():
        weights = weights / INCEPTION_WEIGHTS_FILE
    if not weights.is_file():
        raise IngredientsError(f"Inception weights missing: {weights}", INCEPTION_HINT)
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:
        raise IngredientsError(
            f"the FID Inception network needs torch-fidelity (and torchvision): {err}",
            "pip install torch-fidelity torchvision  (on a machine where torchvision works)",
        ) from err
    module = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights)
    )
    return TorchFeatureExtractor(module, device=device, size=299)
