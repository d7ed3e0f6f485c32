"""`storyreel init`, `validate` and `schema`, through typer's runner and as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storyreel.cli import app
from storyreel.errors import StoryreelError

runner = CliRunner()

BAD = """\
title: Broken
cast:
  ana: {photos: [cast/ana/1.jpg], description: a woman}
shots:
  - id: one
    prompt: "{anna} waves"
  - id: one
    prompt: a street
    seconds: -1
"""


def run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "demo"
    result = run("init", root, "--example")
    assert result.exit_code == 0, result.output
    return root


def test_init_example_then_validate_folder_and_file(example: Path) -> None:
    assert (example / "cast" / "nora" / "1.jpg").is_file()
    for target in (example, example / "story.yaml"):
        result = run("validate", target)
        assert result.exit_code == 0, result.output
        out = result.output
        assert "Launch Day" in out and "4 shots" in out and "3 people" in out
        for word in (
            "nora",
            "sam",
            "eileen",
            "breakfast",
            "suit-up",
            "countdown",
            "orbit",
            "crossfade",
            "Liftoff",
        ):
            assert word in out
        assert "valid" in out and "warning" not in out


def test_init_template_then_validate(tmp_path: Path) -> None:
    result = run("init", tmp_path / "new")
    assert result.exit_code == 0 and "storyreel cast add" in result.output
    result = run("validate", tmp_path / "new")
    assert result.exit_code == 0 and "My story" in result.output


def test_init_refuses_to_overwrite(example: Path) -> None:
    result = run("init", example)
    assert result.exit_code == 1
    assert isinstance(result.exception, StoryreelError)
    assert "not overwriting" in result.exception.message


def test_validate_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "story.yaml").write_text(BAD, encoding="utf-8")
    result = run("validate", tmp_path)
    assert result.exit_code == 1
    out = result.output
    assert "4 problems" in out
    assert "story.yaml:3:" in out and "photo not found: cast/ana/1.jpg" in out
    assert "story.yaml:6:" in out and "unknown cast member 'anna'" in out and "did you mean 'ana'?" in out
    assert "story.yaml:7:" in out and "duplicate shot id 'one' (first used at line 5)" in out
    assert "story.yaml:9:14: shots[1].seconds: must be more than 0, got -1" in out


def test_validate_caps_a_long_problem_list(tmp_path: Path) -> None:
    shots = "".join(f"  - {{id: s{i}, prompt: p, seconds: -1}}\n" for i in range(60))
    (tmp_path / "story.yaml").write_text("title: x\nshots:\n" + shots, encoding="utf-8")
    result = run("validate", tmp_path)
    assert result.exit_code == 1
    assert "60 problems" in result.output and "… and 10 more" in result.output
    assert result.output.count("must be more than 0") == 50


def test_validate_prints_warnings(tmp_path: Path) -> None:
    (tmp_path / "story.yaml").write_text("title: Long\nshots:\n  - {id: a, prompt: sea, seconds: 9}\n")
    result = run("validate", tmp_path / "story.yaml")
    assert result.exit_code == 0
    out = result.output
    assert "warning:" in out and "9 s is longer than the model's 49 frames" in out


def test_schema_to_stdout_and_file(tmp_path: Path) -> None:
    result = run("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "Shot" in schema["$defs"]
    result = run("schema", "--output", tmp_path / "story.schema.json")
    assert result.exit_code == 0
    assert json.loads((tmp_path / "story.schema.json").read_text()) == schema


def _storyreel(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storyreel", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_errors_have_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD, encoding="utf-8")
    done = _storyreel("validate", "bad.yaml", cwd=tmp_path)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    assert "bad.yaml:6:" in output and "unknown cast member 'anna'" in output
    (tmp_path / "story.yaml").write_text("title: x\n", encoding="utf-8")
    done = _storyreel("init", ".", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert "not overwriting" in done.stderr
    done = _storyreel("validate", "missing.yaml", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr


def test_validate_several_stories_and_globs_as_json(example: Path, tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "story.yaml").write_text(BAD, encoding="utf-8")
    (tmp_path / "warn").mkdir()
    (tmp_path / "warn" / "story.yaml").write_text(
        "title: Long\nshots:\n  - {id: a, prompt: sea, seconds: 9}\n"
    )
    result = run("validate", example, str(tmp_path / "*" / "story.yaml"), "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)  # stdout: the one JSON document; tables and problems: stderr
    assert document["schema"] == "storyreel.validate/1" and document["ok"] is False
    good, bad, warned = document["stories"]
    assert good["status"] == "ok" and good["valid"] and good["title"] == "Launch Day"
    assert [shot["id"] for shot in good["shots"]][:2] == ["breakfast", "suit-up"]
    assert bad["status"] == "failed" and bad["valid"] is False and bad["error"]["message"] == "4 problems"
    assert {(p["line"], p["field"]) for p in bad["problems"]} >= {(9, "shots[1].seconds")}
    assert warned["valid"] and warned["warnings"][0]["field"] == "shots[0]"
    assert "Launch Day" in result.stderr and "4 problems" in result.stderr
    assert "3 stories: 2 ok, 1 failed" in result.stderr

    plain = run("validate", example, tmp_path / "bad")
    assert plain.exit_code == 1 and "Launch Day" in plain.stdout and "4 problems" in plain.stderr
    assert "2 stories: 1 ok, 1 failed" in plain.stdout


def test_validate_counts_in_words(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "cast" / "ana").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "cast" / "ana" / "1.jpg")
    (tmp_path / "story.yaml").write_text(
        "title: One\ncast:\n  ana: {photos: [cast/ana/1.jpg], description: a woman}\n"
        "shots:\n  - {id: a, prompt: '{ana} waves', seconds: 7}\n"
    )
    result = run("validate", tmp_path)
    assert result.exit_code == 0, result.output
    assert "1 person, 1 shot, 7 s" in result.output and "with 1 warning" in result.output
    assert "1 people" not in result.output and "warning(s)" not in result.output


def test_doctor_help_keeps_the_gpu_extra() -> None:
    result = run("doctor", "--help")
    assert result.exit_code == 0 and "[gpu] extra" in result.output


@pytest.mark.parametrize("fifo_as", ["story.yaml", "cast/ana/1.jpg"], ids=["story file", "photo"])
def test_validate_says_what_a_fifo_is_without_waiting(tmp_path: Path, fifo_as: str) -> None:
    import os
    import time

    from PIL import Image

    (tmp_path / "cast" / "ana").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "cast" / "ana" / "1.jpg")
    (tmp_path / "story.yaml").write_text(
        "title: One\ncast:\n  ana: {photos: [cast/ana/1.jpg], description: a woman}\n"
        "shots:\n  - {id: a, prompt: '{ana} waves'}\n"
    )
    (tmp_path / fifo_as).unlink()
    os.mkfifo(tmp_path / fifo_as)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "storyreel", "validate", str(tmp_path / "story.yaml")],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert time.perf_counter() - started < 30
    assert result.returncode == 1 and "is a named pipe (FIFO)" in result.stderr
    assert "did you mean" not in result.stderr and "Traceback" not in result.stderr
    if fifo_as != "story.yaml":
        assert "story.yaml:3:" in result.stderr  # file:line of the photo
