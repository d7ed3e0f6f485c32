"""Golden-test setup shared by ``test_golden.py`` and ``scripts/record_golden.py``.

A tiny transformer config that the released code (feizc/Ingredients) can also be built with, weights and
inputs drawn from seeded CPU generators (the same numbers on every machine and torch version), and the
fixture files. The recording script loads these weights into the released classes and stores what they
produce; the tests load the same weights into ours and compare.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from torch import nn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TRANSFORMER_FIXTURE = FIXTURES / "golden_transformer.safetensors"
PIPELINE_FIXTURE = FIXTURES / "golden_pipeline.safetensors"
RELATIVE_TOLERANCE = 1e-5
"""Largest allowed max|ours - released| / max|released| (fp32)."""

SEED = 2025
PEOPLE = 2  # the released code hard-codes two people
HEIGHT, WIDTH, FRAMES = 64, 96, 9  # pixels; 3 latent frames of 8x12
STEPS = 2
GUIDANCES = (1.0, 6.0)
VIT_TOKENS = 5

# The released structure (rotary + learned positional embeddings, injection after every second block,
# 226 text tokens, 5 ViT scales as the released facial extractor hard-codes) at tiny widths.
TRANSFORMER_CONFIG = {
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 8,
    "out_channels": 4,
    "time_embed_dim": 16,
    "text_embed_dim": 32,
    "num_layers": 4,
    "sample_height": HEIGHT // 8,
    "sample_width": WIDTH // 8,
    "sample_frames": FRAMES,
    "patch_size": 2,
    "temporal_compression_ratio": 4,
    "max_text_seq_length": 226,
    "use_rotary_positional_embeddings": True,
    "use_learned_positional_embeddings": True,
    "is_train_face": True,
    "is_kps": False,
    "cross_attn_interval": 2,
    "local_face_scale": 1.0,
    "LFE_id_dim": 8,
    "LFE_vit_dim": 16,
    "LFE_depth": 5,
    "LFE_dim_head": 8,
    "LFE_num_heads": 2,
    "LFE_num_id_token": 2,
    "LFE_num_querie": 4,
    "LFE_ff_mult": 2,
    "LFE_num_scale": 5,
    "cross_attn_dim_head": 8,
    "cross_attn_num_heads": 2,
}

VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("CogVideoXDownBlock3D",) * 4,
    "up_block_types": ("CogVideoXUpBlock3D",) * 4,
    "block_out_channels": (8, 8, 8, 8),
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 2,
    "temporal_compression_ratio": 4,
    "scaling_factor": 0.7,
}


def seeded_weights(module: nn.Module, seed: int) -> nn.Module:
    """Overwrite every floating-point parameter and persistent buffer from one seeded CPU generator, in
    sorted-name order: matrices ``N(0, 1/fan_in)``, 1-D weights (norms) ``1 + N(0, 0.1²)``, other 1-D
    tensors ``N(0, 0.02²)``, learned queries and positional embeddings ``N(0, 0.1²)``."""
    generator = torch.Generator().manual_seed(seed)
    state = module.state_dict(keep_vars=True)
    with torch.no_grad():
        for name in sorted(state):
            tensor = state[name]
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("latents", "pos_embedding"):
                values = 0.1 * noise
            elif name == "local_facial_extractor.proj_out":  # used as ``x @ proj_out``: fan-in is dim 0
                values = noise / tensor.shape[0] ** 0.5
            elif tensor.dim() >= 2:
                values = noise / tensor[0].numel() ** 0.5
            elif leaf == "weight":
                values = 1 + 0.1 * noise
            else:
                values = 0.02 * noise
            tensor.copy_(values.to(tensor.dtype))
    return module


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state (names and float32 bytes), to check both sides load the same weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def ingredients_transformer(seed: int = SEED):
    """Our transformer with the golden config and seeded weights (float32, eval mode)."""
    from ingredients_model.transformer import IngredientsTransformer3DModel

    return seeded_weights(IngredientsTransformer3DModel(**TRANSFORMER_CONFIG), seed).eval()


def vae(seed: int = SEED + 1):
    from diffusers import AutoencoderKLCogVideoX

    return seeded_weights(AutoencoderKLCogVideoX(**VAE_CONFIG), seed).eval()


def scheduler():
    from diffusers import CogVideoXDPMScheduler

    from ingredients_model.tiny import SCHEDULER_CONFIG

    return CogVideoXDPMScheduler(**SCHEDULER_CONFIG)


def people(count: int = PEOPLE, seed: int = SEED + 2) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Per person ``id_cond`` ``[1, id_dim]`` and ``id_vit_hidden`` (``num_scale`` x ``[1, tokens, vit]``)."""
    generator = torch.Generator().manual_seed(seed)
    cfg = TRANSFORMER_CONFIG
    conds, vits = [], []
    for _ in range(count):
        conds.append(torch.randn(1, cfg["LFE_id_dim"], generator=generator))
        vits.append(
            [
                torch.randn(1, VIT_TOKENS, cfg["LFE_vit_dim"], generator=generator)
                for _ in range(cfg["LFE_num_scale"])
            ]
        )
    return conds, vits


def rotary_embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    """The 3-D rotary tables the pipeline builds for the golden size (diffusers' CogVideoX recipe)."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.consisid.pipeline_consisid import get_resize_crop_region_for_grid

    cfg = TRANSFORMER_CONFIG
    p = cfg["patch_size"]
    grid = (cfg["sample_height"] // p, cfg["sample_width"] // p)
    crops = get_resize_crop_region_for_grid(grid, grid[1], grid[0])
    latent_frames = (FRAMES - 1) // cfg["temporal_compression_ratio"] + 1
    return get_3d_rotary_pos_embed(
        embed_dim=cfg["attention_head_dim"], crops_coords=crops, grid_size=grid, temporal_size=latent_frames
    )


def transformer_inputs(batch: int, seed: int = SEED + 3) -> dict:
    """Noisy latents (+ image latents), text embeddings and timesteps for a forward call of ``batch``."""
    generator = torch.Generator().manual_seed(seed)
    cfg = TRANSFORMER_CONFIG
    latent_frames = (FRAMES - 1) // cfg["temporal_compression_ratio"] + 1
    shape = (batch, latent_frames, cfg["in_channels"], cfg["sample_height"], cfg["sample_width"])
    return {
        "hidden_states": torch.randn(shape, generator=generator),
        "encoder_hidden_states": torch.randn(
            batch, cfg["max_text_seq_length"], cfg["text_embed_dim"], generator=generator
        ),
        "timestep": torch.full((batch,), 731, dtype=torch.long),
        "image_rotary_emb": rotary_embeddings(),
    }


def pipeline_inputs(seed: int = SEED + 4) -> dict:
    """Text embeddings (prompt, negative), the conditioning image and the two people for a pipeline call."""
    generator = torch.Generator().manual_seed(seed)
    cfg = TRANSFORMER_CONFIG
    text_shape = (1, cfg["max_text_seq_length"], cfg["text_embed_dim"])
    prompt_embeds = torch.randn(text_shape, generator=generator)
    negative_prompt_embeds = torch.randn(text_shape, generator=generator)
    pixels = torch.randint(0, 256, (HEIGHT, WIDTH, 3), generator=generator, dtype=torch.uint8)
    conds, vits = people()
    return {
        "prompt_embeds": prompt_embeds,
        "negative_prompt_embeds": negative_prompt_embeds,
        "image": PIL.Image.fromarray(np.asarray(pixels)),
        "id_cond": conds,
        "id_vit_hidden": vits,
        "height": HEIGHT,
        "width": WIDTH,
        "num_frames": FRAMES,
        "num_inference_steps": STEPS,
        "output_type": "latent",
    }


def generator(seed: int = SEED + 5) -> torch.Generator:
    """The CPU generator a golden pipeline call draws its VAE sample and noise from."""
    return torch.Generator().manual_seed(seed)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max|actual - expected| / max|expected|."""
    return float((actual - expected).abs().max() / expected.abs().max())
