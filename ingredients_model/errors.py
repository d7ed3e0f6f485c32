"""Errors raised by ingredients_model that carry a fix for the user."""

from __future__ import annotations


class IngredientsError(Exception):
    """A problem the caller can fix (missing weights, bad inputs), with a hint saying how."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message
