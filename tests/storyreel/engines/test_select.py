"""Engine selection: auto picks the model only with a complete folder and a GPU, and says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from storyreel.engines import select
from storyreel.engines.select import choose_engine, resolve_model_dir
from storyreel.errors import StoryreelError


def test_model_dir_comes_from_option_then_story_then_env(monkeypatch, tmp_path: Path) -> None:
    class Story:
        class defaults:
            model = str(tmp_path / "from-story")

    monkeypatch.setenv("STORYREEL_MODEL", str(tmp_path / "from-env"))
    assert resolve_model_dir(tmp_path / "opt", Story()) == (tmp_path / "opt", "--model")
    assert resolve_model_dir(None, Story()) == (tmp_path / "from-story", "defaults.model")
    assert resolve_model_dir(None, None) == (tmp_path / "from-env", "$STORYREEL_MODEL")
    monkeypatch.delenv("STORYREEL_MODEL")
    assert resolve_model_dir(None, None) == (None, "")


def test_auto_without_model_or_gpu_is_preview(monkeypatch, tiny_model_dir: Path, tmp_path: Path) -> None:
    monkeypatch.setattr(select, "cuda_device_name", lambda: None)
    assert choose_engine("auto", None).name == "preview"
    missing = choose_engine("auto", tmp_path / "nope", "--model")
    assert missing.name == "preview" and "does not exist" in missing.reason
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    assert "incomplete" in choose_engine("auto", incomplete, "--model").reason
    no_gpu = choose_engine("auto", tiny_model_dir, "--model")
    assert no_gpu.name == "preview" and "no CUDA GPU" in no_gpu.reason


def test_auto_with_complete_model_and_gpu_is_ingredients(monkeypatch, tiny_model_dir: Path) -> None:
    monkeypatch.setattr(select, "cuda_device_name", lambda: "Test GPU 80GB")
    choice = choose_engine("auto", tiny_model_dir, "--model")
    assert choice.name == "ingredients" and choice.model_dir == tiny_model_dir
    assert "Test GPU 80GB" in choice.reason


def test_explicit_choices(monkeypatch, tiny_model_dir: Path) -> None:
    monkeypatch.setattr(select, "cuda_device_name", lambda: None)
    assert choose_engine("preview", tiny_model_dir).name == "preview"
    assert choose_engine("ingredients", tiny_model_dir, "--model").name == "ingredients"
    with pytest.raises(StoryreelError) as err:
        choose_engine("ingredients", None)
    assert "storyreel models tiny" in (err.value.hint or "")
    with pytest.raises(StoryreelError):
        choose_engine("fancy", None)
