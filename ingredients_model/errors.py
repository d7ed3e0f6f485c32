"""Errors raised by ingredients_model that carry a fix for the user."""

from __future__ import annotations

from pathlib import Path

from ingredients_model.released import DOWNLOAD_GB, REPO_ID


class HintedError(Exception):
    """An error meant for a person: what went wrong (``message``) and how to fix it (``hint``).

    The common base of this package's errors and of the errors of applications built on it, so a
    caller can catch and show both the same way.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class IngredientsError(HintedError):
    """A problem the caller can fix (missing weights, bad inputs), with a hint saying how."""


class MissingWeightsError(IngredientsError):
    """Files of a model folder are missing or damaged: (re)downloading the released weights into
    ``model_dir`` fixes it. ``also``: further advice (a package to install, another way out)."""

    def __init__(self, message: str, model_dir: Path, also: str | None = None):
        self.model_dir = Path(model_dir)
        self.also = also
        hint = download_hint(self.model_dir)
        super().__init__(message, f"{hint}; {also}" if also else hint)


def download_hint(model_dir: Path | str) -> str:
    """How to get the released model folder into ``model_dir``, in this package's terms."""
    return (
        f"download the released weights ({REPO_ID}, about {DOWNLOAD_GB} GB) into {model_dir} with "
        "ingredients_model.checkpoint.download_model (it resumes partial downloads)"
    )
