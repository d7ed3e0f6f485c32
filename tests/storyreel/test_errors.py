"""User-facing errors: one base with the model package, and model hints worded for the CLI."""

from __future__ import annotations

from pathlib import Path

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
