"""Cast names: the one rule for ``cast:`` keys in story.yaml, ``{name}`` in prompts and ``cast/<name>/``.

A name is written in any script: letters (lower case where the script has case: ``josé``, ``zoë``,
``дмитрий``, ``李``, ``राम``), the marks those letters carry, digits, ``-`` and ``_``, starting with a
letter or ``_``; at most :data:`MAX_LENGTH` characters. Names are compared, and folders named, in Unicode
NFC, so ``josé`` typed with a combining accent is the same person (and the same folder) as ``josé``.
"""

from __future__ import annotations

import unicodedata

__all__ = [
    "MAX_LENGTH",
    "NAME_RULE",
    "cast_name_problem",
    "is_placeholder_name",
    "normalize_name",
]

MAX_LENGTH = 64
"""Characters in a cast name (its folder name stays far below file systems' 255-byte limit)."""
NAME_RULE = "letters of any script (lower case), digits, - and _, starting with a letter or _"
"""The rule in words, for messages and help texts."""
_MAX_BYTES = 240


def normalize_name(name: str) -> str:
    """``name`` in Unicode NFC, the one form names are compared and stored in."""
    return unicodedata.normalize("NFC", name)


def _problem(name: str, *, any_case: bool) -> str | None:
    if not name:
        return "it is empty"
    if len(name) > MAX_LENGTH or len(name.encode("utf-8")) > _MAX_BYTES:
        return f"it is longer than {MAX_LENGTH} characters"
    for position, char in enumerate(name):
        kind = unicodedata.category(char)
        if char == "_" or kind in ("Ll", "Lo", "Lm") or (any_case and kind in ("Lu", "Lt")):
            continue
        if position and (char == "-" or kind in ("Nd", "Mn", "Mc")):
            continue
        if kind in ("Lu", "Lt"):
            return f"{char!r} is upper case (write {char.lower()!r})"
        if position == 0 and (char == "-" or kind in ("Nd", "Mn", "Mc")):
            return f"it starts with {char!r}"
        return f"{char!r} is not a letter, digit, - or _"
    return None


def cast_name_problem(name: str) -> str | None:
    """Why ``name`` (already NFC) is not a valid cast name, or None."""
    return _problem(name, any_case=False)


def is_placeholder_name(text: str) -> bool:
    """Whether ``text`` is spelled like a name (any case): ``{text}`` in a prompt then names a cast member
    (an unknown or upper-case one is reported as such), anything else in braces is a brace error."""
    return _problem(normalize_name(text), any_case=True) is None
