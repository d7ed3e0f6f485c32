"""Prompt-embedding cache: memory, then verified safetensors on disk, rebuilt when damaged or stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from subprocess import PIPE

import pytest
import torch

from storyreel.engines.text_cache import TextCacheWarning, TextEmbeddingCache


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


def test_damaged_or_tampered_entries_are_rebuilt_with_a_warning(tmp_path: Path) -> None:
    encode = Encoder()
    reference = TextEmbeddingCache("rev", 226, torch.float32).get(tmp_path, "a cafe", "", encode)
    tensors = _entries(tmp_path)[0]
    meta = tensors.with_suffix(".json")

    def edit_meta(**changes: object) -> None:
        meta.write_text(json.dumps({**json.loads(meta.read_text()), **changes}))

    def folder_instead_of(path: Path) -> None:
        path.unlink()
        (path / "inside").mkdir(parents=True)

    for damage, reason in (
        (lambda: tensors.write_bytes(tensors.read_bytes()[:-10]), "hash mismatch"),  # truncated
        (lambda: tensors.write_bytes(b"not safetensors at all"), "hash mismatch"),
        (lambda: meta.write_text("{"), "unreadable"),
        (lambda: meta.write_text("[1]"), "not an object"),  # valid JSON, not an object
        (lambda: edit_meta(shapes=[1]), "inconsistent"),
        (lambda: edit_meta(sha256="0" * 64), "hash mismatch"),
        (lambda: edit_meta(built_from={}), "stale"),
        (lambda: tensors.unlink(), "unreadable"),
        (lambda: folder_instead_of(tensors), "is a folder"),
        (lambda: folder_instead_of(meta), "is a folder"),
    ):
        damage()
        cache = TextEmbeddingCache("rev", 226, torch.float32)
        with pytest.warns(TextCacheWarning, match=reason):
            rebuilt = cache.get(tmp_path, "a cafe", "", encode)
        assert cache.misses == 1 and torch.equal(rebuilt[0], reference[0])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert TextEmbeddingCache("rev", 226, torch.float32).get(tmp_path, "a cafe", "", encode)
    assert len(encode.calls) == 11


_WRITER = """
import sys, torch
from pathlib import Path
from storyreel.engines.text_cache import TextEmbeddingCache

def encode(prompt, negative):
    generator = torch.Generator().manual_seed(sum(map(ord, prompt)))
    return torch.randn(1, 226, 64, generator=generator), torch.randn(1, 226, 64, generator=generator)

cache = TextEmbeddingCache("rev", 226, torch.float32)
for index in range(100):
    cache.get(Path(sys.argv[1]), f"prompt number {index}", "", encode)
print(cache.misses, cache.hits)
"""


@pytest.mark.slow
def test_two_processes_writing_the_same_entries(tmp_path: Path) -> None:
    """Two render processes encoding the same 100 prompts at once: no crash, each entry built once."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", _WRITER, str(tmp_path / "text")]
    procs = [subprocess.Popen(command, stdout=PIPE, stderr=PIPE, text=True, env=env) for _ in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "Error" not in err and "Warning" not in err, err
    misses, hits = (sum(int(out.split()[i]) for out, _ in outputs) for i in (0, 1))
    assert (misses, hits) == (100, 100)  # every entry encoded by one process, read by the other
    assert len(_entries(tmp_path / "text")) == 100 and not list((tmp_path / "text").glob("*.partial"))
    cache = TextEmbeddingCache("rev", 226, torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every entry verifies
        for index in range(100):
            cache.get(tmp_path / "text", f"prompt number {index}", "", lambda p, n: pytest.fail(p))


def test_an_entry_the_model_refuses_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    from ingredients_model.errors import IngredientsError
    from storyreel.engines.text_cache import TextCacheWarning

    def wants_seven_tokens(embeddings: tuple[torch.Tensor, torch.Tensor]) -> None:
        if embeddings[0].shape[1] != 7:
            raise IngredientsError("prompt_embeds holds 5 text tokens; this transformer takes exactly 7")

    TextEmbeddingCache("rev", 226, torch.float32).get(
        tmp_path, "a cafe", "", lambda p, n: (torch.ones(1, 5, 4), torch.zeros(1, 5, 4))
    )
    encode = Encoder()
    cache = TextEmbeddingCache("rev", 226, torch.float32, check=wants_seven_tokens)
    with pytest.warns(TextCacheWarning, match="unusable by the model.*exactly 7"):
        rebuilt = cache.get(tmp_path, "a cafe", "", encode)
    assert encode.calls == [("a cafe", "")] and rebuilt[0].shape == (1, 7, 4)
    again = TextEmbeddingCache("rev", 226, torch.float32, check=wants_seven_tokens)
    assert torch.equal(again.get(tmp_path, "a cafe", "", encode)[0], rebuilt[0]) and len(encode.calls) == 1
