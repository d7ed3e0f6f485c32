"""Tiny random stand-ins for the metric networks, built offline in well under a second.

They exercise the real loading and scoring code paths (transformers ``CLIPModel``/``CLIPProcessor`` from a
folder, the FID maths on real feature vectors) where the real weights cannot be downloaded. Their
numbers mean nothing; they are for tests and smoke runs only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

_CORPUS = (
    "a woman with short black hair sits at a cafe table by the window laughing in the morning light",
    "a tall man with a grey beard walks through a park with a dog, an astronaut in a white suit",
    "two people talk on a street at night, close up portrait of a person smiling at the camera",
)


def write_tiny_clip_folder(path: Path, seed: int = 0) -> Path:
    """Write a random ~100 kB CLIP (ViT, text transformer, BPE tokenizer from a tiny corpus) to ``path``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers: the PIL backend is the default class
        from transformers import CLIPImageProcessor as ImageProcessor

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|startoftext|>", "<|endoftext|>"], end_of_word_suffix="</w>"
    )
    bpe.train_from_iterator([text.lower() for text in _CORPUS], trainer)
    vocab = bpe.get_vocab()
    bpe.model.save(str(path))
    merges_file = path / "merges.txt"
    merges = [tuple(line.split()) for line in merges_file.read_text().splitlines() if line and line[0] != "#"]
    merges_file.unlink()
    (path / "vocab.json").unlink()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    special = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": special,
            "pad_token_id": special,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(path)
    image_processor = ImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


class TinyFeatureNet(nn.Module):
    """A random conv net mapping uint8 images [B, 3, H, W] to ``4 * dim`` features (for FID tests)."""

    def __init__(self, dim: int = 16, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, dim, kernel_size=5, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator) * 0.2)
            self.conv.bias.zero_()
        self.pool = nn.AdaptiveAvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 127.5 - 1.0
        return torch.tanh(self.pool(self.conv(x))).flatten(1)
