"""The conventions every command shares: -h, completion, --quiet/--verbose/--debug anywhere, flags
without <bool>, documented environment variables, exit codes, and output that is never wrapped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from storyreel.cli import EXIT_INTERNAL, app, main
from storyreel.cli.app import StoryreelCommand, StoryreelGroup
from storyreel.environment import ENVIRONMENT
from tests.helpers.projects import REPO, make_project, storyreel

runner = CliRunner()


def _commands(command=None, path=()):
    """Every (path, command) of the CLI, groups included."""
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_command_follows_the_conventions() -> None:
    for path, command in _commands():
        kind = StoryreelGroup if hasattr(command, "commands") else StoryreelCommand
        assert isinstance(command, kind), f"{' '.join(path)}: build it from StoryreelTyper"
        short = runner.invoke(app, [*path, "-h"])
        assert short.exit_code == 0 and short.stdout == runner.invoke(app, [*path, "--help"]).stdout
        assert "<bool>" not in short.stdout, f"storyreel {' '.join(path)} -h shows <bool>"
        for flag in ("--quiet", "--verbose", "--debug"):
            assert flag in short.stdout, f"storyreel {' '.join(path)} lacks {flag}"


def test_quiet_and_verbose_before_or_after_the_subcommand(tmp_path_factory, tmp_path: Path) -> None:
    story = str(make_project(tmp_path_factory, tmp_path / "demo", shots=1))
    normal = runner.invoke(app, ["plan", story])
    assert normal.exit_code == 0 and "engine: preview" in normal.stderr and "1 todo" in normal.stdout
    for argv in (["-q", "plan", story], ["plan", story, "--quiet"]):
        quiet = runner.invoke(app, argv)
        assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == normal.stdout
    both = runner.invoke(app, ["-v", "plan", story, "-q"])
    assert both.exit_code == 2 and "cannot be combined" in both.stderr
    assert runner.invoke(app, ["plan", story]).stderr == normal.stderr  # each invocation starts afresh


def test_verbose_shows_details(tmp_path_factory, tmp_path: Path) -> None:
    story = make_project(tmp_path_factory, tmp_path / "demo", shots=1)
    assert runner.invoke(app, ["render", str(story), "--no-reel"]).exit_code == 0
    plain = runner.invoke(app, ["reel", str(story)])
    verbose = runner.invoke(app, ["reel", str(story), "-v"])
    assert plain.exit_code == verbose.exit_code == 0
    assert "ffmpeg: " not in plain.stderr
    assert re.search(r"ffmpeg: \S+ -hide_banner .* -map 0:v:0 ", verbose.stderr)


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.yaml")
    plain = storyreel("plan", missing)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr and "does not exist" in plain.stderr
    for argv in (("--debug", "plan", missing), ("plan", missing, "--debug")):
        debug = storyreel(*argv)
        assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_exit_codes(tmp_path: Path, monkeypatch, capsys) -> None:
    assert storyreel("--version").returncode == 0
    assert storyreel("render", "--no-such-option").returncode == 2  # usage
    assert storyreel("validate", str(tmp_path / "missing.yaml")).returncode == 1  # user error

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("storyreel.api.validate", broken)
    with pytest.raises(SystemExit) as exited:
        main(["validate", str(tmp_path)])
    assert exited.value.code == EXIT_INTERNAL == 70
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: a bug" in err and "--debug" in err


def test_shell_completion_is_on() -> None:
    script = storyreel("--show-completion", "bash")
    assert script.returncode == 0 and "_STORYREEL_COMPLETE" in script.stdout
    assert "--install-completion" in runner.invoke(app, ["-h"]).stdout


def test_piped_output_is_not_wrapped(tmp_path_factory, tmp_path: Path) -> None:
    story = make_project(tmp_path_factory, tmp_path / "demo", shots=1)
    caption = "A caption long enough to be wrapped at eighty columns, " * 4
    story.write_text(story.read_text().replace("Caption 1", caption.strip()))
    for columns in ("40", "200"):
        result = storyreel("validate", str(story), env={"COLUMNS": columns})
        assert result.returncode == 0 and caption.strip() in result.stdout


def test_every_environment_variable_is_documented() -> None:
    sources = [*REPO.joinpath("storyreel").rglob("*.py"), *REPO.joinpath("ingredients_model").rglob("*.py")]
    used = {name for path in sources for name in re.findall(r"\bSTORYREEL_[A-Z_]+\b", path.read_text())}
    missing = sorted(used - set(ENVIRONMENT))
    assert used and not missing, f"add {missing} to storyreel.environment"
    readme = REPO.joinpath("README.md").read_text()
    help_text = runner.invoke(app, ["-h"]).stdout
    for name in ENVIRONMENT:
        assert f"`{name}`" in readme, f"README.md does not document {name}"
        assert name in help_text


def test_a_warning_raised_twice_is_shown_once(tmp_path: Path, t1_jpg: Path) -> None:
    """A group photo's face warning comes from the render and again from the review page: one line."""
    root = tmp_path / "group"
    (root / "cast").mkdir(parents=True)
    (root / "cast" / "t1.jpg").write_bytes(t1_jpg.read_bytes())
    (root / "story.yaml").write_text(
        "title: g\noutput: {size: 160x96, fps: 8, title_card: false}\ncast:\n"
        "  ana: {photos: [cast/t1.jpg], description: a woman}\n"
        "shots:\n  - {id: s1, prompt: '{ana} walks', seconds: 1}\n"
    )
    result = storyreel("render", str(root / "story.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("shows 6 faces and none is chosen") == 1
