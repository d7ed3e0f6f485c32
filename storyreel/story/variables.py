"""Text variables: ``vars:`` in story.yaml, ``${name}`` in text, ``$$`` for a literal ``$``.

Values come from ``vars:`` and, overriding them, from ``--set name=value``. They are substituted into the
raw YAML data before validation, so every later check (a music file that does not exist, a reel file
outside the project) sees the final text and reports it at the line it came from. Variables are allowed
only in the fields of :data:`VARIABLE_FIELDS`; a ``${`` anywhere else is a problem, as is an unknown name.
Values are literal: a value's own ``$`` or ``${…}`` is not expanded again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from storyreel.story.positions import Document
from storyreel.story.problems import did_you_mean

__all__ = [
    "VARIABLE_FIELDS",
    "VAR_NAME_PATTERN",
    "apply_variables",
    "parse_assignments",
    "substitute",
    "variable_names",
    "variants",
]

VAR_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_VAR_NAME_RE = re.compile(VAR_NAME_PATTERN)
_TOKEN_RE = re.compile(r"\$\$|\$\{([^{}]*)\}|\$\{")

VARIABLE_FIELDS: tuple[tuple[Any, ...], ...] = (
    ("title",),
    ("credits",),
    ("output", "file"),
    ("output", "formats", "*", "file"),
    ("music", "file"),
    ("defaults", "negative_prompt"),
    ("shots", "*", "prompt"),
    ("shots", "*", "negative_prompt"),
    ("shots", "*", "caption"),
    ("brand", "end_card", "text"),
    ("brand", "end_card", "url"),
)
"""Where ``${name}`` may appear (``*``: any list index): prompts, captions, title, credits, music,
the reel file names and the call-to-action card."""

ALLOWED_WHERE = "prompts, captions, title, credits, music.file, output file names and brand.end_card"


def _allowed(loc: tuple[Any, ...]) -> bool:
    return any(
        len(pattern) == len(loc) and all(p == "*" or p == part for p, part in zip(pattern, loc, strict=True))
        for pattern in VARIABLE_FIELDS
    )


def substitute(text: str, values: Mapping[str, str | None]) -> tuple[str, list[tuple[int, str, str | None]]]:
    """``text`` with ``${name}`` replaced and ``$$`` unescaped; also the problems found, each as
    (character offset, message, hint). A name without a value (``None``) is a problem, as is an unknown
    one."""
    out: list[str] = []
    problems: list[tuple[int, str, str | None]] = []
    last = 0
    for match in _TOKEN_RE.finditer(text):
        out.append(text[last : match.start()])
        last = match.end()
        whole, name = match.group(0), match.group(1)
        if whole == "$$":
            out.append("$")
        elif name is None:
            problems.append((match.start(), "'${' without a closing '}'", "write $$ for a literal $"))
        elif not _VAR_NAME_RE.match(name.strip()):
            problems.append(
                (match.start(), f"'{whole}' is not a variable name", "names use letters, digits, _")
            )
        elif name.strip() not in values:
            known = sorted(values)
            hint = did_you_mean(name.strip(), known) + (
                "known: " + ", ".join(known) if known else "declare it under `vars:`"
            )
            problems.append((match.start(), f"unknown variable '{name.strip()}'", hint))
        elif values[name.strip()] is None:
            message = f"variable '{name.strip()}' has no value"
            problems.append(
                (match.start(), message, f"pass --set {name.strip()}=VALUE, or give it one in vars:")
            )
        else:
            out.append(str(values[name.strip()]))
    out.append(text[last:])
    return "".join(out), problems


def variable_names(text: str) -> list[str]:
    """The variable names used as ``${name}`` in ``text`` (in order, without repeats)."""
    names = [m.group(1).strip() for m in _TOKEN_RE.finditer(text) if m.group(1) is not None]
    return list(dict.fromkeys(names))


def parse_assignments(items: list[str] | None) -> dict[str, list[str]]:
    """``["a=1", "b=x", "a=2"]`` (``--set``) → ``{"a": ["1", "2"], "b": ["x"]}``; ValueError on a bad item.

    Repeating a name asks for one variant per value (see :func:`storyreel.story.variants`)."""
    values: dict[str, list[str]] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not _VAR_NAME_RE.match(name):
            raise ValueError(f"--set {item!r}: expected NAME=VALUE with a name of letters, digits and _")
        values.setdefault(name, [])
        if value not in values[name]:
            values[name].append(value)
    return values


def _scalar(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def apply_variables(doc: Document, overrides: Mapping[str, str] | None) -> dict[str, str]:
    """Substitute the story's variables into ``doc.data`` in place, recording every problem in ``doc``.

    Returns the values used (``vars:`` merged with ``overrides``, overrides winning).
    """
    declared: dict[str, str | None] = {}
    raw = doc.data.get("vars")
    if isinstance(raw, dict):
        for name, value in raw.items():
            loc = ("vars", name)
            if not _VAR_NAME_RE.match(str(name)):
                doc.problem(loc, f"bad variable name {name!r}", "use letters, digits and _", key=True)
            elif isinstance(value, dict | list):
                doc.problem(loc, "a variable's value must be plain text or a number", "quote it")
            else:
                declared[str(name)] = _scalar(value)
    elif raw is not None:
        doc.problem(("vars",), "expected a mapping of name: value lines", "e.g. vars: {product: shoes}")
    for name in overrides or {}:
        if name not in declared:
            hint = did_you_mean(name, list(declared)) + (
                "declared: " + ", ".join(declared) if declared else "declare it under `vars:` first"
            )
            where = ("vars",) if "vars" in doc.data else ()
            doc.problem(where, f"--set {name}: no such variable in vars:", hint, key=bool(where))
    values = {**declared, **{k: v for k, v in (overrides or {}).items() if k in declared}}
    _walk(doc, doc.data, (), values)
    return {name: value for name, value in values.items() if value is not None}


def _walk(doc: Document, node: Any, loc: tuple[Any, ...], values: Mapping[str, str | None]) -> Any:
    if isinstance(node, dict):
        for key in list(node):
            if loc == () and key == "vars":
                continue
            node[key] = _walk(doc, node[key], (*loc, key), values)
        return node
    if isinstance(node, list):
        for index, item in enumerate(node):
            node[index] = _walk(doc, item, (*loc, index), values)
        return node
    if not isinstance(node, str) or "$" not in node:
        return node
    if not _allowed(loc):
        if "${" in node:
            doc.problem(loc, "variables cannot be used here", f"${{name}} is allowed in {ALLOWED_WHERE}")
        return node
    text, problems = substitute(node, values)
    for offset, message, hint in problems:
        doc.problems.append(doc.make(loc, message, hint, mark=_mark_in(doc, loc, node, offset)))
        doc.reported.add(loc)
    return text


def _mark_in(doc: Document, loc: tuple[Any, ...], value: str, offset: int) -> Any:
    """The position of character ``offset`` of the scalar at ``loc`` when the YAML holds it verbatim
    (a plain or single-line quoted scalar); else the scalar's start."""
    import yaml

    found = doc.nodes.get(loc)
    if found is None:
        return None
    node = found[1]
    token = _TOKEN_RE.match(value, offset)
    needle = token.group(0) if token else "${"
    pos = node.start_mark.index - 1
    for _ in range(value[:offset].count(needle) + 1):  # the same occurrence as in the value
        pos = doc.text.find(needle, pos + 1, node.end_mark.index)
        if pos < 0:
            return node.start_mark
    line_start = doc.text.rfind("\n", 0, pos) + 1
    return yaml.Mark("", pos, doc.text.count("\n", 0, pos), pos - line_start, None, None)


def variants(assignments: Mapping[str, list[str]]) -> list[dict[str, str]]:
    """One set of values per combination of ``assignments`` (``--set`` values by name): ``{"a": ["1",
    "2"], "b": ["x"]}`` → ``[{"a": "1", "b": "x"}, {"a": "2", "b": "x"}]``; ``[{}]`` when empty."""
    import itertools

    names = list(assignments)
    combos = itertools.product(*(assignments[name] or [""] for name in names))
    return [dict(zip(names, combo, strict=True)) for combo in combos]
