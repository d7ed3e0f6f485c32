"""A tiny randomly initialised Wan VACE folder in diffusers layout, for tests and install smoke tests.

Every component is diffusers' or transformers' own class, saved with ``WanVACEPipeline.save_pretrained``:
the transformer and VAE with diffusers' own test configs (tests/pipelines/wan/test_wan_vace.py), a 2-layer
``UMT5EncoderModel`` with the offline Unigram tokenizer of ``ingredients_model.tiny``, and the scheduler
that diffusers' conversion script writes for the released folders (UniPC, flow matching, ``flow_shift``
3.0). Its ``storyreel.json`` gives a small native format (:data:`TINY_NATIVE`), so that a CPU renders a shot
in about a second.
"""

from __future__ import annotations

from pathlib import Path

from storyreel.models.wan_vace import FolderRecord, NativeFormat, write_record

__all__ = ["TINY_NATIVE", "write_tiny_folder"]

TINY_NATIVE = NativeFormat(width=112, height=64, fps=16, max_frames=17)
"""112x64 (or 64x112): Wan's aspect, divisible by 16 (VAE 8 x patch 2); 17 frames = 5 latent frames."""

_TEXT_DIM = 32


def _build(root: Path, seed: int) -> None:
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanVACEPipeline,
        WanVACETransformer3DModel,
    )
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    from ingredients_model.tiny import write_tiny_tokenizer

    vocab_size = write_tiny_tokenizer(root / "tokenizer")
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=vocab_size,
            d_model=_TEXT_DIM,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=_TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=3,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        vace_layers=[0, 2],
        vace_in_channels=96,
    )
    scheduler = UniPCMultistepScheduler(  # as diffusers' convert_wan_to_diffusers.py writes for Wan VACE
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
    )
    pipe = WanVACEPipeline(
        tokenizer=AutoTokenizer.from_pretrained(root / "tokenizer"),
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
    )
    pipe.save_pretrained(root)
    write_record(root, FolderRecord(variant="tiny", repo_id=None, revision=None, native=TINY_NATIVE))


def write_tiny_folder(path: Path, seed: int = 0) -> Path:
    """Write a complete tiny random Wan VACE folder at ``path`` (replaced if present; built aside and
    renamed into place, the caller's random state untouched) and return it."""
    from ingredients_model.tiny import write_folder_atomically

    return write_folder_atomically(path, lambda root: _build(root, seed))
