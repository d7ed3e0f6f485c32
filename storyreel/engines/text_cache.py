"""Prompt embeddings cached per prompt: in memory, and on disk in ``.storyreel/cache/text/``.

One entry per (model revision, prompt, negative prompt, sequence length, dtype)::

    <key>.safetensors   prompt_embeds, negative_prompt_embeds
    <key>.json          written last: what the entry was built from, tensor shapes, sha256 of the tensors file
    <key>.lock          held (flock) while an entry is built, so concurrent renders build it once

Every hit from disk is verified (metadata, file hash, shapes, and the model's own check of the tensors when
one is given); a damaged, stale or unusable entry is rebuilt with a :class:`TextCacheWarning`, never
trusted.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from ingredients_model.errors import HintedError
from storyreel.errors import StoryreelWarning
from storyreel.fsutil import atomic_path, atomic_write_json, clear_folder_in_way
from storyreel.locking import entry_lock

TEXT_CACHE_FORMAT = 1
TENSOR_NAMES = ("prompt_embeds", "negative_prompt_embeds")
Embeddings = tuple[torch.Tensor, torch.Tensor]
Encode = Callable[[str, str], Embeddings]
Check = Callable[[Embeddings], None]


class TextCacheWarning(StoryreelWarning):
    """A text-embedding cache entry was damaged, stale or unusable by the model and has been rebuilt."""


class TextEmbeddingCache:
    """``get(prompt, negative, encode)`` → ``(prompt_embeds, negative_prompt_embeds)`` on the CPU.

    ``check(embeddings)`` raises an error with a hint (the pipeline's own check of text embeddings) when an
    entry read from disk cannot be used by the model; the entry is then rebuilt."""

    def __init__(
        self, model_revision: str, max_sequence_length: int, dtype: torch.dtype, check: Check | None = None
    ):
        self.model_revision = model_revision
        self.max_sequence_length = max_sequence_length
        self.dtype = dtype
        self.check = check
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
        """Embeddings from memory, else from ``directory`` (verified), else ``encode(prompt, negative)``.

        Several processes may ask for the same entry at once: one builds it while the others wait on its
        lock, then read it.
        """
        key = self.key(prompt, negative)
        found = self.memory.get(key)
        if found is None and directory is not None:
            found = self._load(directory, key, prompt, negative)
            if found is None:
                found = self._build(directory, key, prompt, negative, encode)
                self.memory[key] = found
                return found
        if found is None:
            self.misses += 1
            found = self._encoded(prompt, negative, encode)
        else:
            self.hits += 1
        self.memory[key] = found
        return found

    def _build(self, directory: Path, key: str, prompt: str, negative: str, encode: Encode) -> Embeddings:
        """Encode and store the entry under its lock (unless another process stored it meanwhile)."""
        with entry_lock(directory / f"{key}.lock"):
            found = self._load(directory, key, prompt, negative, quiet=True)
            if found is not None:
                self.hits += 1
                return found
            self.misses += 1
            found = self._encoded(prompt, negative, encode)
            self._save(directory, key, prompt, negative, found)
            return found

    def _encoded(self, prompt: str, negative: str, encode: Encode) -> Embeddings:
        return tuple(t.detach().to("cpu", self.dtype).contiguous() for t in encode(prompt, negative))

    def _reject(self, key: str, reason: str) -> None:
        warnings.warn(
            f"text cache entry {key[:12]}… is {reason}; rebuilding it", TextCacheWarning, stacklevel=5
        )

    def _load(
        self, directory: Path, key: str, prompt: str, negative: str, *, quiet: bool = False
    ) -> Embeddings | None:
        """The verified entry, or None: silently when there is none, with a warning when it is damaged
        or stale (``quiet``: no warning, it was given already)."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        meta_path, tensors_path = directory / f"{key}.json", directory / f"{key}.safetensors"
        reject = (lambda reason: None) if quiet else (lambda reason: self._reject(key, reason))
        folders = [path.name for path in (meta_path, tensors_path) if path.is_dir()]
        if folders:
            return reject(f"damaged ({', '.join(folders)} is a folder)")
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            return reject(f"unreadable ({type(err).__name__}: {err})")
        if not isinstance(meta, dict):
            return reject(f"unreadable (its metadata is a JSON {type(meta).__name__}, not an object)")
        if meta.get("built_from") != self.describe(prompt, negative):
            return reject("stale (built from other inputs)")
        try:
            data = tensors_path.read_bytes()
        except OSError as err:
            return reject(f"unreadable ({type(err).__name__}: {err})")
        if meta.get("sha256") != hashlib.sha256(data).hexdigest():
            return reject("corrupt (tensor file hash mismatch)")
        try:
            tensors = load(data)
        except (SafetensorError, ValueError) as err:
            return reject(f"unreadable ({type(err).__name__}: {err})")
        shapes = meta.get("shapes")
        if (
            not isinstance(shapes, dict)
            or any(name not in tensors for name in TENSOR_NAMES)
            or any(list(tensors[name].shape) != shapes.get(name) for name in TENSOR_NAMES)
        ):
            return reject("inconsistent (tensor names or shapes differ from its metadata)")
        found = tensors["prompt_embeds"], tensors["negative_prompt_embeds"]
        if self.check is not None:
            try:
                self.check(found)
            except HintedError as err:
                return reject(f"unusable by the model ({err.message})")
        return found

    def _save(self, directory: Path, key: str, prompt: str, negative: str, embeds: Embeddings) -> None:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        tensors = dict(zip(TENSOR_NAMES, embeds, strict=True))
        tensors_path, meta_path = directory / f"{key}.safetensors", directory / f"{key}.json"
        for path in (tensors_path, meta_path):
            clear_folder_in_way(path)
        with atomic_path(tensors_path) as tmp:
            save_file(tensors, str(tmp), metadata={"key": key})
            digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        meta = {
            "built_from": self.describe(prompt, negative),
            "shapes": {name: list(t.shape) for name, t in tensors.items()},
            "sha256": digest,
        }
        atomic_write_json(meta_path, meta)
