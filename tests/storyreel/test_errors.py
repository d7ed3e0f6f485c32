"""User-facing errors: one base with the model package, and model hints worded for the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingredients_model.errors import HintedError, IngredientsError, MissingWeightsError
from storyreel.errors import Location, StoryreelError, user_hint


def test_both_packages_errors_share_one_base() -> None:
    assert issubclass(StoryreelError, HintedError) and issubclass(IngredientsError, HintedError)
    err = StoryreelError("bad", "fix it", location=Location(Path("s.yaml"), 3, 4))
    assert str(err) == "s.yaml:3:4: bad\n  hint: fix it"


def test_missing_weights_are_fixed_with_the_cli(tmp_path: Path) -> None:
    err = MissingWeightsError("gone", tmp_path / "m", also="install facexlib")
    assert "storyreel" not in (err.hint or "")
    assert (
        user_hint(err) == f"run `storyreel models download {tmp_path / 'm'}` (it resumes partial downloads)"
        "; install facexlib"
    )
    wrapped = StoryreelError.from_error(err, "shot a: ")
    assert wrapped.message == "shot a: gone" and wrapped.hint == user_hint(err)
    assert user_hint(IngredientsError("x", "plain")) == "plain"


def test_the_cli_prints_storyreel_warnings_as_one_line_on_stderr(capsys, monkeypatch) -> None:
    import warnings

    from storyreel.cli import main
    from storyreel.cli.app import app
    from storyreel.errors import StoryreelWarning
    from storyreel.identity_cache import IdentityCacheWarning
    from storyreel.reel import ReelWarning

    assert issubclass(ReelWarning, StoryreelWarning) and issubclass(IdentityCacheWarning, StoryreelWarning)

    @app.command("warn-once", hidden=True)
    def warn_once() -> None:
        warnings.warn("shot a: a transition was shortened", StoryreelWarning, stacklevel=1)

    try:
        with pytest.raises(SystemExit) as done:
            main(["warn-once"])
        out, err = capsys.readouterr()
    finally:
        app.registered_commands.pop()
    assert not done.value.code and out == ""
    assert err.splitlines() == ["warning: shot a: a transition was shortened"]  # no source line
