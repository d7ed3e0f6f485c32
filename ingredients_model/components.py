"""The pipeline's models at their released sizes (or the tiny test sizes), built from configs alone.

For accounting on the meta device (``memory``, ``flops``) and for benchmarks that fill them with random
weights directly on a GPU. The released sizes:

- transformer: ``IngredientsTransformer3DModel()`` (its defaults are the released config: 42 blocks, width
  3072);
- text encoder: T5 v1.1 XXL encoder (``T5EncoderModel``; the CogVideoX-5B text encoder);
- VAE: the CogVideoX-5B ``AutoencoderKLCogVideoX`` (diffusers' defaults, scaling factor 0.7).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ingredients_model import released

__all__ = [
    "RELEASED_CLIP",
    "SIZES",
    "ClipSize",
    "build_models",
    "released_text_encoder_config",
    "released_vae_config",
]


@dataclass(frozen=True)
class ClipSize:
    """One clip: pixel frames, height and width."""

    frames: int
    height: int
    width: int

    def latent_shape(self, channels: int, spatial: int = 8, temporal: int = 4) -> tuple[int, int, int, int]:
        """``[latent_frames, channels, height / spatial, width / spatial]`` of this clip."""
        return ((self.frames - 1) // temporal + 1, channels, self.height // spatial, self.width // spatial)


RELEASED_CLIP = ClipSize(frames=released.MAX_FRAMES, height=480, width=720)
"""The released model's clip: 49 frames (6 s at 8 fps), 720x480."""

SIZES = ("released", "tiny")


def released_text_encoder_config():
    """``T5Config`` of the T5 v1.1 XXL encoder (google/t5-v1_1-xxl, as CogVideoX-5B ships it)."""
    from transformers import T5Config

    return T5Config(
        vocab_size=32128,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
    )


def released_vae_config() -> dict:
    """Config of the CogVideoX-5B VAE: diffusers' ``AutoencoderKLCogVideoX`` defaults, scaling factor 0.7."""
    return {"scaling_factor": 0.7}


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_models(
    size: str = "released",
    device: str | torch.device = "meta",
    dtype: torch.dtype = torch.bfloat16,
    vocab_size: int | None = None,
) -> dict[str, Any]:
    """``{"transformer", "text_encoder", "vae"}`` at ``size`` ("released" or "tiny"), created on ``device``
    in ``dtype``. On ``meta`` nothing is allocated; elsewhere the weights are the models' own random
    initialisation, computed where they live (a GPU fills 11 billion parameters in seconds). ``vocab_size``
    overrides the tiny text encoder's vocabulary (default: the tiny tokenizer's)."""
    from diffusers import AutoencoderKLCogVideoX
    from transformers import T5EncoderModel

    from ingredients_model import tiny
    from ingredients_model.transformer import IngredientsTransformer3DModel

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")
    if size == "released":
        transformer_config, text_config, vae_config = (
            {},
            released_text_encoder_config(),
            released_vae_config(),
        )
    else:
        transformer_config = tiny.tiny_transformer_config()
        text_config = tiny.tiny_text_encoder_config(vocab_size or tiny.tiny_vocab_size())
        vae_config = tiny.tiny_vae_config()
    with torch.device(device), _default_dtype(dtype):
        models = {
            "transformer": IngredientsTransformer3DModel(**transformer_config),
            "text_encoder": T5EncoderModel(text_config),
            "vae": AutoencoderKLCogVideoX(**vae_config),
        }
    for model in models.values():
        tensors = itertools.chain(model.parameters(), model.buffers())
        if any(t.is_floating_point() and t.dtype != dtype for t in tensors):  # e.g. float64 buffers
            model.to(dtype=dtype)
        model.eval().requires_grad_(False)
    return models
