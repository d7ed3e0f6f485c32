"""Trained weights → a model folder in the released layout that `load_pipeline` loads directly.

The transformer is rebuilt from `model_dir` exactly as training set it up (the same starting point, see
:mod:`ingredients_model.training.start`), the checkpoint's trainable parameters are loaded, the LoRA is merged
into the DiT weights (peft), and the plain transformer is saved; every other component folder of `model_dir`
is hard-linked (or copied), and `face_encoder/` comes from wherever training took it. Written to
`<out>.partial`, then renamed, so `out` is complete or absent.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from ingredients_model.errors import IngredientsError
from ingredients_model.training.config import TrainConfig
from ingredients_model.training.model import TRAINABLE_FILE, load_trainable_state, setup_trainable
from ingredients_model.training.start import face_encoder_dir, load_start_transformer

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def merged_transformer(config: TrainConfig, checkpoint: Path):
    """The base transformer with the checkpoint's trainable weights loaded and its LoRA merged away."""
    weights = Path(checkpoint) / TRAINABLE_FILE
    if not weights.is_file():
        raise IngredientsError(f"{weights} is missing", "pass a checkpoint-<step> folder written by training")
    transformer = load_start_transformer(config, torch.float32)
    setup_trainable(transformer, config.model_copy(update={"gradient_checkpointing": False}))
    load_trainable_state(transformer, load_file(str(weights)))
    if config.lora is not None:
        transformer.fuse_lora(lora_scale=1.0)
        transformer.unload_lora()
    transformer.requires_grad_(False)
    return transformer.eval()


def _link_tree(src: Path, dst: Path) -> None:
    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link)


def export_model(
    config: TrainConfig,
    checkpoint: Path,
    out: Path,
    dtype: str = "bfloat16",
    trainable_names: list[str] | None = None,
) -> Path:
    """Write `out` (replacing it): `model_dir` with the trained, LoRA-merged transformer saved in `dtype`."""
    if dtype not in _DTYPES:
        raise IngredientsError(f"unknown export dtype {dtype!r}", f"use one of {sorted(_DTYPES)}")
    out = Path(out)
    transformer = merged_transformer(config, checkpoint)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    for child in sorted(Path(config.model_dir).iterdir()):
        if child.name in ("transformer", "face_encoder"):
            continue
        if child.is_dir():
            _link_tree(child, partial / child.name)
        else:
            shutil.copy2(child, partial / child.name)
    _link_tree(face_encoder_dir(config), partial / "face_encoder")
    transformer.to(_DTYPES[dtype]).save_pretrained(
        partial / "transformer", safe_serialization=True, max_shard_size="10GB"
    )
    (partial / "training.json").write_text(
        json.dumps(
            {
                "base_model": str(config.model_dir),
                "checkpoint": str(checkpoint),
                "config": json.loads(config.model_dump_json()),
                "trained_parameters": trainable_names,
            },
            indent=2,
        )
        + "\n"
    )
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out
