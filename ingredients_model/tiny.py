"""A tiny randomly initialised model folder in the released layout, for tests and install smoke tests.

Every component is the real class with a shrunken config: IngredientsTransformer3DModel (2 layers,
2 heads x 16, small face modules), AutoencoderKLCogVideoX (diffusers' ConsisID test size), a 2-layer
T5EncoderModel with a Unigram tokenizer built offline, the released CogVideoXDPMScheduler config and a small
random face encoder (real dlib detection and alignment). Native video: 64x96 pixels (3:2), 9 frames.
"""

from __future__ import annotations

import math
import re
import shutil
import string
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = [
    "SCHEDULER_CONFIG",
    "TINY_SIZE",
    "tiny_text_encoder_config",
    "tiny_transformer_config",
    "tiny_vae_config",
    "tiny_vocab_size",
    "write_tiny_model_folder",
    "write_tiny_tokenizer",
]

TINY_SIZE = {"height": 64, "width": 96, "frames": 9}
"""Native video size of the tiny model (height/width in pixels)."""

_TEXT_DIM = 32
_VAE_SPATIAL = 8  # 2 ** (len(block_out_channels) - 1)
_VIT_TOKENS = 5  # ViT tokens per scale of the tiny face encoder (released: 577)

# The released scheduler/scheduler_config.json (CogVideoX-5B I2V).
SCHEDULER_CONFIG = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "sample_max_value": 1.0,
    "set_alpha_to_one": True,
    "snr_shift_scale": 1.0,
    "steps_offset": 0,
    "timestep_spacing": "trailing",
    "trained_betas": None,
}

_CORPUS = """
a woman in her thirties with short black hair sits at a cafe table by the window, laughing, morning light
a tall man with a grey beard walks along a city street at night, neon signs reflect on the wet road
two friends talk on a park bench under autumn trees while leaves fall slowly around them
the camera pans across a crowded market full of fruit, spices and colourful fabrics
an old fisherman repairs his net on a wooden boat at sunset, waves glitter in the background
a young boy in a red jacket runs through a snowy forest, breath visible in the cold air
three colleagues discuss a plan in a bright office meeting room with a whiteboard
a smiling girl with curly brown hair reads a book in a quiet library, soft warm light
a couple dances in a kitchen, music playing, steam rising from a pot on the stove
close-up of a face turning towards the camera, cinematic lighting, shallow depth of field
four people sit around a dinner table, raising glasses, candles and plates of food
the video captures a man in half body, seated in a dimly lit room with a formal atmosphere
""".strip().splitlines()


def tiny_transformer_config() -> dict:
    """Config of the tiny IngredientsTransformer3DModel: the released structure (rotary + learned positional
    embeddings, identity injection after every second block, 226 text tokens), shrunken widths."""
    return {
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "in_channels": 8,
        "out_channels": 4,
        "time_embed_dim": 16,
        "text_embed_dim": _TEXT_DIM,
        "num_layers": 2,
        "sample_height": TINY_SIZE["height"] // _VAE_SPATIAL,
        "sample_width": TINY_SIZE["width"] // _VAE_SPATIAL,
        "sample_frames": TINY_SIZE["frames"],
        "patch_size": 2,
        "temporal_compression_ratio": 4,
        "max_text_seq_length": 226,
        "use_rotary_positional_embeddings": True,
        "use_learned_positional_embeddings": True,
        "is_train_face": True,
        "is_kps": False,
        "cross_attn_interval": 2,
        "LFE_id_dim": 8,
        "LFE_vit_dim": 16,
        "LFE_depth": 2,
        "LFE_dim_head": 8,
        "LFE_num_heads": 2,
        "LFE_num_id_token": 2,
        "LFE_num_querie": 4,
        "LFE_ff_mult": 1,
        "LFE_num_scale": 2,
        "cross_attn_dim_head": 8,
        "cross_attn_num_heads": 2,
    }


def tiny_text_encoder_config(vocab_size: int):
    """``T5Config`` of the tiny T5 encoder (2 layers, width 32, gated-GELU like T5 v1.1)."""
    from transformers import T5Config

    return T5Config(
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


def tiny_vae_config() -> dict:
    """Config of the tiny AutoencoderKLCogVideoX (diffusers' ConsisID test size; 8x spatial, 4x temporal)."""
    return {
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


def _unigram_vocab() -> list[tuple[str, float]]:
    """Unigram pieces with log-probability scores from corpus counts: whole words (``▁word``), ``▁`` and every
    printable ASCII character. Counted, not EM-trained, so the vocabulary is identical on every run."""
    counts: Counter[str] = Counter(ch for ch in string.printable if not ch.isspace())
    for line in _CORPUS:
        for word in re.findall(r"\w+|[^\w\s]", line):
            counts["▁" + word] += 1
            counts.update("▁" + word)
    total = sum(counts.values())
    pieces = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    return specials + [(piece, round(math.log(count / total), 6)) for piece, count in pieces]


def tiny_vocab_size() -> int:
    """Vocabulary size of the tiny tokenizer (``write_tiny_tokenizer``)."""
    return len(_unigram_vocab())


def write_tiny_tokenizer(folder: Path) -> int:
    """Write a small T5 tokenizer built offline (Unigram, Metaspace, ``</s>`` appended); return its size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    tok = Tokenizer(models.Unigram(_unigram_vocab(), unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tokenizer = T5TokenizerFast(
        tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0
    )
    tokenizer.model_max_length = 226
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


def _build_components(root: Path, seed: int) -> None:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler
    from transformers import AutoTokenizer, T5EncoderModel

    from ingredients_model.faces import write_tiny_face_encoder
    from ingredients_model.pipeline import IngredientsPipeline
    from ingredients_model.transformer import IngredientsTransformer3DModel

    vocab_size = write_tiny_tokenizer(root / "tokenizer")
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(tiny_text_encoder_config(vocab_size))
    vae = AutoencoderKLCogVideoX(**tiny_vae_config())
    config = tiny_transformer_config()
    pipe = IngredientsPipeline(
        tokenizer=AutoTokenizer.from_pretrained(root / "tokenizer"),
        text_encoder=text_encoder,
        vae=vae,
        transformer=IngredientsTransformer3DModel(**config),
        scheduler=CogVideoXDPMScheduler(**SCHEDULER_CONFIG),
    )
    pipe.save_pretrained(root)  # model_index.json + one folder per component, safetensors
    write_tiny_face_encoder(
        root / "face_encoder",
        id_dim=config["LFE_id_dim"],
        vit_dim=config["LFE_vit_dim"],
        vit_tokens=_VIT_TOKENS,
        num_scales=config["LFE_num_scale"],
        seed=seed,
    )


def write_folder_atomically(path: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(staging)`` on a temporary sibling folder, then rename it to ``path`` (replaced if
    present), so ``path`` is either complete or absent. The caller's random state is left untouched.
    Returns ``path``."""
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        with torch.random.fork_rng(devices=[]):
            build(staging)
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def write_tiny_model_folder(path: Path, seed: int = 0) -> Path:
    """Write a complete tiny random model folder (released layout, incl. ``face_encoder/``) at ``path``
    (:func:`write_folder_atomically`). Returns ``path``."""
    return write_folder_atomically(path, lambda root: _build_components(root, seed))
