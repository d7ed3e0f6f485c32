"""Shared fixtures: real sample photos that installed packages ship, and tiny random model folders.

Everything here is built on the fly; no weights or third-party photos live in the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# tests never read insightface's own model folder (buffalo_l, released metrics): they build their own
os.environ["INSIGHTFACE_HOME"] = os.path.join(os.path.dirname(__file__), "no-insightface-models-here")


@pytest.fixture(scope="session")
def t1_jpg() -> Path:
    """insightface's sample group photo: 1280x886, six people."""
    import insightface

    path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-image's astronaut (one face, public-domain NASA photo) written as a PNG."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny randomly initialised model folder in the released layout (built once per run)."""
    from ingredients_model.checkpoint import write_tiny_model_folder

    return write_tiny_model_folder(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete tiny random Wan VACE folder in diffusers layout (built once per run)."""
    from storyreel.models.wan_vace_tiny import write_tiny_folder

    return write_tiny_folder(tmp_path_factory.mktemp("tiny-wan") / "model")
