"""Several photos of one person → one :class:`~ingredients_model.faces.IdentityEmbedding`.

* ``"mean"`` (default): ArcFace part = mean of the L2-normalised ArcFace vectors, rescaled to their mean
  norm; everything else (EVA-CLIP pooled part, hidden states, aligned face) from the best photo.
* ``"best"``: everything from the best photo. ``"first"``: everything from the first photo.

The best photo has the highest :func:`photo_quality` (larger and sharper faces win). Importing this
module is cheap (torch loads on first use), so the modes can be checked without the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from ingredients_model.faces import IdentityEmbedding

__all__ = ["COMBINE_MODES", "Combine", "combine_embeddings", "photo_quality"]

Combine = Literal["mean", "best", "first"]
COMBINE_MODES: tuple[str, ...] = get_args(Combine)
ARCFACE_DIM = 512
"""Leading values of the released ``id_cond`` that are the ArcFace embedding."""


def photo_quality(face_size: int, sharpness: float) -> float:
    """``min(face size, 256 px) * log(1 + sharpness)`` (sharpness: variance of the Laplacian on the face)."""
    return min(face_size, 256) * math.log1p(max(sharpness, 0.0))


def combine_embeddings(
    embeddings: Sequence[IdentityEmbedding],
    combine: Combine = "mean",
    *,
    quality: Sequence[float] | None = None,
    arcface_dim: int = ARCFACE_DIM,
) -> IdentityEmbedding:
    """Merge several photos' embeddings of one person (see the module docstring).

    ``quality``: one :func:`photo_quality` per embedding (default: all equal, so the first is the best);
    ``arcface_dim``: how many leading values of ``id_cond`` are ArcFace (``FaceEncoder.arcface_dim``).
    """
    import torch

    from ingredients_model.faces import IdentityEmbedding

    if combine not in COMBINE_MODES:
        raise ValueError(f"combine must be 'mean', 'best' or 'first', not {combine!r}")
    if not embeddings:
        raise ValueError("nothing to combine")
    if quality is not None and len(quality) != len(embeddings):
        raise ValueError(f"{len(quality)} quality values for {len(embeddings)} embeddings")
    if combine == "first":
        return embeddings[0]
    scores = quality if quality is not None else [0.0] * len(embeddings)
    best = embeddings[max(range(len(embeddings)), key=lambda i: scores[i])]
    if combine == "best" or len(embeddings) == 1:
        return best
    n = arcface_dim
    arcs = torch.stack([embedding.id_cond[:n].float() for embedding in embeddings])
    norms = arcs.norm(dim=1, keepdim=True).clamp_min(1e-12)
    mean = (arcs / norms).mean(dim=0)
    arc = mean / mean.norm().clamp_min(1e-12) * norms.mean()
    return IdentityEmbedding(
        id_cond=torch.cat([arc, best.id_cond[n:].float()]),
        id_vit_hidden=best.id_vit_hidden,
        aligned_face=best.aligned_face,
        face_box=best.face_box,
    )
