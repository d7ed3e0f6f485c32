"""Prompt placeholders: ``{name}`` names a cast member, ``{{`` and ``}}`` are literal braces."""

from __future__ import annotations

import re
from collections.abc import Callable

from storyreel.names import is_placeholder_name, normalize_name

__all__ = ["placeholders", "prompt_tokens", "resolve_prompt"]

_PROMPT_TOKEN_RE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def prompt_tokens(prompt: str) -> list[tuple[str, str, int]]:
    """Split a prompt into ("text", s, pos) and ("name", name, pos) tokens (names in NFC); ValueError on a
    stray brace."""
    tokens: list[tuple[str, str, int]] = []
    last = 0
    for match in _PROMPT_TOKEN_RE.finditer(prompt):
        if match.start() > last:
            tokens.append(("text", prompt[last : match.start()], last))
        whole, name = match.group(0), match.group(1)
        if whole in ("{{", "}}"):
            tokens.append(("text", whole[0], match.start()))
        elif name is None:
            raise ValueError(f"stray '{whole}' at character {match.start() + 1}")
        elif not is_placeholder_name(name.strip()):
            raise ValueError(f"'{whole}' at character {match.start() + 1} is not a cast name placeholder")
        else:
            tokens.append(("name", normalize_name(name.strip()), match.start()))
        last = match.end()
    if last < len(prompt):
        tokens.append(("text", prompt[last:], last))
    return tokens


def placeholders(prompt: str) -> list[str]:
    """Cast names used as ``{name}`` in ``prompt``, in order of first use (``{{``/``}}``: literal braces)."""
    names: list[str] = []
    for kind, value, _ in prompt_tokens(prompt):
        if kind == "name" and value not in names:
            names.append(value)
    return names


def resolve_prompt(prompt: str, description: Callable[[str], str]) -> str:
    """``prompt`` with each ``{name}`` replaced by ``description(name)`` and ``{{``/``}}`` unescaped."""
    return "".join(
        description(value) if kind == "name" else value for kind, value, _ in prompt_tokens(prompt)
    )
