"""Prompt embeddings cached per prompt: in memory, and on disk in ``.storyreel/cache/text/``.

One entry per (model revision, prompt, negative prompt, sequence length, dtype)::

    <key>.safetensors   prompt_embeds, negative_prompt_embeds
    <key>.json          written last: what the entry was built from, tensor shapes, sha256 of the tensors file

Every hit from disk is verified (metadata, file hash, shapes); a damaged or stale entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch

from storyreel.fsutil import atomic_path, atomic_write_json

TEXT_CACHE_FORMAT = 1
Embeddings = tuple[torch.Tensor, torch.Tensor]
Encode = Callable[[str, str], Embeddings]


class TextEmbeddingCache:
    """``get(prompt, negative, encode)`` → ``(prompt_embeds, negative_prompt_embeds)`` on the CPU."""

    def __init__(self, model_revision: str, max_sequence_length: int, dtype: torch.dtype):
        self.model_revision = model_revision
        self.max_sequence_length = max_sequence_length
        self.dtype = dtype
        self.memory: dict[str, Embeddings] = {}
        self.hits = self.misses = 0

    def describe(self, prompt: str, negative: str) -> dict:
        """What an entry depends on (stored in its JSON and hashed into its key)."""
        return {
            "format": TEXT_CACHE_FORMAT,
            "model_revision": self.model_revision,
            "prompt": prompt,
            "negative_prompt": negative,
            "max_sequence_length": self.max_sequence_length,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def key(self, prompt: str, negative: str) -> str:
        canonical = json.dumps(self.describe(prompt, negative), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def entry_files(self, directory: Path, prompt: str, negative: str) -> tuple[Path, Path]:
        """The files of one entry in ``directory`` (tensors, metadata), whether they exist yet or not."""
        key = self.key(prompt, negative)
        return directory / f"{key}.safetensors", directory / f"{key}.json"

    def get(self, directory: Path | None, prompt: str, negative: str, encode: Encode) -> Embeddings:
        """Embeddings from memory, else from ``directory`` (verified), else ``encode(prompt, negative)``."""
        key = self.key(prompt, negative)
        if key in self.memory:
            self.hits += 1
            return self.memory[key]
        found = self._load(directory, key, prompt, negative) if directory is not None else None
        if found is None:
            self.misses += 1
            found = tuple(t.detach().to("cpu", self.dtype).contiguous() for t in encode(prompt, negative))
            if directory is not None:
                self._save(directory, key, prompt, negative, found)
        else:
            self.hits += 1
        self.memory[key] = found
        return found

    def _load(self, directory: Path, key: str, prompt: str, negative: str) -> Embeddings | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        meta_path, tensors_path = directory / f"{key}.json", directory / f"{key}.safetensors"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            data = tensors_path.read_bytes()
        except (OSError, ValueError):
            return None
        if meta.get("built_from") != self.describe(prompt, negative):
            return None
        if meta.get("sha256") != hashlib.sha256(data).hexdigest():
            return None
        try:
            tensors = load_file(tensors_path)
        except (SafetensorError, OSError, ValueError):
            return None
        names = ("prompt_embeds", "negative_prompt_embeds")
        if any(name not in tensors for name in names):
            return None
        if any(list(tensors[name].shape) != meta.get("shapes", {}).get(name) for name in names):
            return None
        return tensors["prompt_embeds"], tensors["negative_prompt_embeds"]

    def _save(self, directory: Path, key: str, prompt: str, negative: str, embeds: Embeddings) -> None:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"prompt_embeds": embeds[0], "negative_prompt_embeds": embeds[1]}
        tensors_path = directory / f"{key}.safetensors"
        with atomic_path(tensors_path) as tmp:
            save_file(tensors, str(tmp), metadata={"key": key})
        meta = {
            "built_from": self.describe(prompt, negative),
            "shapes": {name: list(t.shape) for name, t in tensors.items()},
            "sha256": hashlib.sha256(tensors_path.read_bytes()).hexdigest(),
        }
        atomic_write_json(directory / f"{key}.json", meta)
