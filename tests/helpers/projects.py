"""Small test projects built from the example cast (photos written once per session, then copied)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_CAST_CACHE: dict[str, Path] = {}
REPO = Path(__file__).resolve().parents[2]

CAST = {
    "nora": "a young woman with long straight light-brown hair",
    "sam": "a young man with short dark hair in a dark red shirt",
    "eileen": "a woman with short light-brown hair in an orange flight suit",
}
PROMPTS = [
    "{nora} and {sam} sit at a kitchen table with coffee, morning light",
    "{eileen} waves at the camera in front of a launch pad",
    "{sam} and {nora} lean toward the television and cheer",
    "{eileen} floats by a spacecraft window, the Earth behind her",
    "{nora} walks along a beach at sunset",
    "{sam} reads a newspaper on a train",
]


def example_cast(factory: pytest.TempPathFactory) -> Path:
    """A ``cast/`` folder with the example photos (written once per test session)."""
    if "cast" not in _CAST_CACHE:
        from storyreel.example import write_example_photos

        cast = factory.mktemp("example-cast") / "cast"
        write_example_photos(cast)
        _CAST_CACHE["cast"] = cast
    return _CAST_CACHE["cast"]


CONSENT = {"given_by": "the person", "allowed_uses": ["internal", "social"], "contact": "cast@example.com"}


def example_library(factory: pytest.TempPathFactory) -> Path:
    """A cast library with the example cast added by `cast add --library` (consent :data:`CONSENT`,
    descriptions :data:`CAST`); built once per test session."""
    if "library" not in _CAST_CACHE:
        from storyreel.cast_library import CastLibrary, add_member

        library = CastLibrary(factory.mktemp("example-library") / "library")
        cast = example_cast(factory)
        for name, description in CAST.items():
            add_member(library, name, [cast / name / "1.jpg"], description=description, consent=CONSENT)
        _CAST_CACHE["library"] = library.root
    return _CAST_CACHE["library"]


def make_library(factory: pytest.TempPathFactory, root: Path) -> Path:
    """A copy of :func:`example_library` at ``root``; returns ``root``."""
    shutil.copytree(example_library(factory), root)
    return root


def story_text(
    shots: int = 3,
    *,
    size: str = "160x96",
    fps: int = 12,
    seconds: float = 1.0,
    engine: str = "preview",
    steps: int = 2,
    captions: str = "none",
    extra_defaults: str = "",
    from_library: tuple[str, ...] = (),
    header: str = "",
) -> str:
    """A story over the example cast; people in ``from_library`` are left out of ``cast:`` (prompts name
    them: they come from the cast library); ``header`` adds top-level lines (``use:``, ``cast_library:``)."""
    lines = [
        "title: Test Reel",
        *([header.rstrip()] if header else []),
        f"output: {{size: {size}, fps: {fps}, file: reel.mp4, captions: {captions}, title_card: false}}",
        f"defaults: {{engine: {engine}, seconds: {seconds}, steps: {steps}, seed: 5{extra_defaults}}}",
        "cast:",
    ]
    for name, description in CAST.items():
        if name not in from_library:
            lines.append(f"  {name}: {{photos: [cast/{name}/1.jpg], description: {description}}}")
    lines.append("shots:")
    for index in range(shots):
        lines.append(f"  - id: s{index + 1}")
        lines.append(f'    prompt: "{PROMPTS[index % len(PROMPTS)]}"')
        lines.append(f"    caption: Caption {index + 1}")
    return "\n".join(lines) + "\n"


def make_project(factory: pytest.TempPathFactory, root: Path, **story: object) -> Path:
    """A project at ``root`` with the example cast and a small story; returns the story file."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(example_cast(factory), root / "cast")
    path = root / "story.yaml"
    path.write_text(story_text(**story))  # type: ignore[arg-type]
    return path


def storyreel(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess (``python -m storyreel``) and capture its output."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "storyreel", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
        timeout=timeout,
    )


def snapshot(folder: Path, pattern: str = "*") -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file matching ``pattern`` in ``folder``."""
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.glob(pattern)) if p.is_file()
    }
