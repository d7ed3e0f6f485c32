"""ingredients_model.requirements: the installed versions against pyproject.toml's floors."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from ingredients_model import requirements
from ingredients_model.requirements import declared_requirements, unmet_requirements

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]


def _names(lines: list[str]) -> set[str]:
    return {Requirement(line).name for line in lines}


def test_the_installed_metadata_is_pyprojects() -> None:
    """One source of truth: what the check reads is what pyproject.toml declares (else reinstall)."""
    declared = {
        (str(Requirement(line)), extra) for line, extra in declared_requirements(["cpu", "gpu", "test"])
    }
    expected = {(str(Requirement(line)), None) for line in PYPROJECT["dependencies"]}
    for extra, lines in PYPROJECT["optional-dependencies"].items():
        expected |= {(str(Requirement(line)), extra) for line in lines}
    assert {(str(Requirement(line.split(";")[0])), extra) for line, extra in declared} == expected


def test_this_environment_meets_the_floors() -> None:
    assert [str(u) for u in unmet_requirements(["cpu", "test"])] == []


def test_one_onnxruntime_build_per_install() -> None:
    base = _names(PYPROJECT["dependencies"])
    extras = {k: _names(v) for k, v in PYPROJECT["optional-dependencies"].items()}
    assert not {"onnxruntime", "onnxruntime-gpu"} & base
    assert "onnxruntime" in extras["cpu"] and "onnxruntime-gpu" not in extras["cpu"]
    assert "onnxruntime-gpu" in extras["gpu"] and "onnxruntime" not in extras["gpu"]


def test_an_old_or_missing_package_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.version

    def fake(name: str) -> str:
        if name == "diffusers":
            return "0.30.0"
        if name == "facexlib":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(requirements.importlib.metadata, "version", fake)
    unmet = {u.name: u for u in unmet_requirements(["gpu"])}
    assert unmet["diffusers"].installed == "0.30.0" and unmet["diffusers"].extra is None
    assert "0.30.0 is installed" in str(unmet["diffusers"])
    assert unmet["facexlib"].installed is None and unmet["facexlib"].extra == "gpu"
    assert "facexlib" not in {u.name for u in unmet_requirements()}  # an extra not asked for
