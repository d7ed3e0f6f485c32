"""Fixtures for the metric tests: a tiny buffalo_l folder and insightface's FaceAnalysis on crafted faces."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.face_models import SquareFaceDetector, face_analysis, write_buffalo_l


@pytest.fixture(scope="session")
def buffalo_l_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder's ``face_encoder/models/buffalo_l`` with the tiny detector and recognizer."""
    return write_buffalo_l(tmp_path_factory.mktemp("model") / "face_encoder" / "models" / "buffalo_l")


@pytest.fixture(scope="session")
def square_app(buffalo_l_dir: Path):
    """The real FaceAnalysis loaded from the tiny buffalo_l folder, its detector swapped for
    :class:`SquareFaceDetector` (recognition, alignment and ``get`` stay insightface's own)."""
    return face_analysis(buffalo_l_dir, SquareFaceDetector())
