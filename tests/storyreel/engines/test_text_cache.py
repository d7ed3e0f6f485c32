"""Prompt-embedding cache: memory, then verified safetensors on disk, rebuilt when damaged or stale."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from storyreel.engines.text_cache import TextEmbeddingCache


class Encoder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, prompt: str, negative: str) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append((prompt, negative))
        seed = sum(map(ord, prompt + "|" + negative))
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(1, 7, 4, generator=generator), torch.randn(1, 7, 4, generator=generator)


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def test_memory_then_disk_then_encoder(tmp_path: Path) -> None:
    encode = Encoder()
    cache = TextEmbeddingCache("rev", 226, torch.float32)
    first = cache.get(tmp_path, "a cafe", "", encode)
    assert cache.get(tmp_path, "a cafe", "", encode)[0] is first[0]  # memory
    fresh = TextEmbeddingCache("rev", 226, torch.float32)
    again = fresh.get(tmp_path, "a cafe", "", encode)  # disk
    assert encode.calls == [("a cafe", "")] and fresh.hits == 1
    assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])
    meta = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert meta["built_from"]["model_revision"] == "rev" and meta["built_from"]["prompt"] == "a cafe"


def test_other_model_revision_or_negative_prompt_is_another_entry(tmp_path: Path) -> None:
    encode = Encoder()
    TextEmbeddingCache("rev", 226, torch.float32).get(tmp_path, "a cafe", "", encode)
    TextEmbeddingCache("rev2", 226, torch.float32).get(tmp_path, "a cafe", "", encode)
    TextEmbeddingCache("rev", 226, torch.float32).get(tmp_path, "a cafe", "blurry", encode)
    assert len(encode.calls) == 3 and len(_entries(tmp_path)) == 3


def test_damaged_or_tampered_entries_are_rebuilt(tmp_path: Path) -> None:
    encode = Encoder()
    reference = TextEmbeddingCache("rev", 226, torch.float32).get(tmp_path, "a cafe", "", encode)
    tensors = _entries(tmp_path)[0]
    meta = tensors.with_suffix(".json")
    for damage in (
        lambda: tensors.write_bytes(tensors.read_bytes()[:-10]),  # truncated
        lambda: tensors.write_bytes(b"not safetensors at all"),
        lambda: meta.write_text("{"),  # unreadable metadata
        lambda: meta.write_text(json.dumps({**json.loads(meta.read_text()), "sha256": "0" * 64})),
        lambda: tensors.unlink(),
    ):
        damage()
        cache = TextEmbeddingCache("rev", 226, torch.float32)
        rebuilt = cache.get(tmp_path, "a cafe", "", encode)
        assert cache.misses == 1 and torch.equal(rebuilt[0], reference[0])
    assert len(encode.calls) == 6
