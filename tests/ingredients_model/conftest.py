"""Fixtures shared by the pipeline tests: the tiny model's pipeline and four people from real photos."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ingredients_model.checkpoint import load_pipeline
from ingredients_model.faces import load_face_encoder
from ingredients_model.photos import load_photo


@pytest.fixture(scope="module")
def pipe(tiny_model_dir: Path):
    """The tiny model folder's pipeline, float32 on the CPU (one per test module)."""
    pipe = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32, memory="none")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def people(tiny_model_dir: Path, t1_jpg: Path, astronaut_png: Path):
    """Four identities from real photos: three faces of t1.jpg and the astronaut."""
    encoder = load_face_encoder(tiny_model_dir / "face_encoder")
    group = load_photo(t1_jpg)
    astronaut = encoder.encode(load_photo(astronaut_png))
    return [encoder.encode(group, face_index=i) for i in range(3)] + [astronaut]
