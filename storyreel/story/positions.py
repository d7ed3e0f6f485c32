"""``story.yaml`` as plain data that remembers where every value came from (line and column).

PyYAML composes the document into nodes that carry ``start_mark`` positions; this module converts those
nodes to plain data itself, keeping a map from each field path (``("shots", 2, "cast", 0)``) to its key
and value nodes. PyYAML's own constructor (``construct_document``) would be less code but cannot serve:
it keeps no path → node map, stops at the first bad scalar (we report every one), lets a repeated key
silently win, and expands alias bombs before anyone can measure them. So only the scalar constructors,
merge-key flattening and the marks come from PyYAML.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from storyreel.story.problems import Problem, StoryValidationError, path_str

__all__ = ["MAX_DEPTH", "MAX_NODES", "Document", "compose"]

MAX_NODES = 100_000
MAX_DEPTH = 32


class _Limit(Exception):
    def __init__(self, message: str, mark: yaml.Mark | None, hint: str):
        super().__init__(message)
        self.message, self.mark, self.hint = message, mark, hint


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting and many nodes while composing (before anything is expanded).

    YAML 1.1's base-60 numbers are read as text, as YAML 1.2 does: ``[16:9, 9:16]`` are two aspect
    ratios, not the integers 969 and 556.
    """

    yaml_implicit_resolvers: ClassVar[dict[str, list]] = {
        first: list(resolvers) for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        self._nodes += 1
        if self._depth > MAX_DEPTH:
            raise _Limit(
                f"nesting deeper than {MAX_DEPTH} levels",
                self.peek_event().start_mark,
                "a story is only a few levels deep",
            )
        if self._nodes > MAX_NODES:
            raise _Limit(f"more than {MAX_NODES} YAML nodes", self.peek_event().start_mark, "split the story")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
for _first in "+-0123456789":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, ("tag:yaml.org,2002:str", _SEXAGESIMAL))

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _measure(root: Node) -> None:
    """Refuse alias bombs and recursive aliases: count nodes and depth as if every alias were expanded."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            visiting.discard(key)
            if size[key] > MAX_NODES or depth[key] > MAX_DEPTH:
                raise _Limit(
                    "aliases expand to too much data (more than "
                    f"{MAX_NODES} values or {MAX_DEPTH} levels): refusing an alias bomb",
                    node.start_mark,
                    "use anchors (&name) and aliases (*name) only for small shared blocks",
                )
            continue
        if key in size:
            continue
        if key in visiting:
            raise _Limit("recursive alias: a block contains itself", node.start_mark, "remove the *alias")
        visiting.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node) if id(kid) not in size)


class Document:
    """A YAML document converted to plain Python data, remembering the nodes behind every field path."""

    def __init__(self, file: Path, text: str, loader: _Loader, root: MappingNode):
        self.file = file
        self.text = text
        self.loader = loader
        self.nodes: dict[tuple[Any, ...], tuple[Node | None, Node]] = {}
        self.problems: list[Problem] = []
        self.reported: set[tuple[Any, ...]] = set()
        self.data: dict[str, Any] = self.convert(root, (), None)

    def problem(
        self, loc: tuple[Any, ...], message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        """Record a problem at the node of ``loc`` (its key when ``key``; else the nearest known parent)."""
        self.problems.append(self.make(loc, message, hint, key=key))
        self.reported.add(loc)

    def make(
        self,
        loc: tuple[Any, ...],
        message: str,
        hint: str | None = None,
        *,
        key: bool = False,
        mark: Any = None,
    ) -> Problem:
        if mark is None:
            mark = self.mark(loc, key=key)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        return Problem(self.file, line, column, path_str(loc), message, hint)

    def mark(self, loc: tuple[Any, ...], *, key: bool = False) -> yaml.Mark | None:
        for end in range(len(loc), -1, -1):
            found = self.nodes.get(tuple(loc[:end]))
            if found:
                key_node, value_node = found
                exact = end == len(loc)
                if (key or not exact) and key_node is not None:
                    return key_node.start_mark
                return value_node.start_mark
        return None

    def line(self, loc: tuple[Any, ...]) -> int | None:
        mark = self.mark(loc)
        return mark.line + 1 if mark else None

    def convert(self, node: Node, loc: tuple[Any, ...], key_node: Node | None) -> Any:
        self.nodes[loc] = (key_node, node)
        if isinstance(node, ScalarNode):
            if node.tag == _TIMESTAMP_TAG:
                return node.value
            try:
                return self.loader.construct_object(node)
            except Exception as err:  # any bad scalar (unknown tag, 5000-digit int, bad base64) is the user's
                reason = getattr(err, "problem", None) or str(err)
                self.problem(loc, f"cannot read this value: {reason}", "quote it to make it plain text")
                return None
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ_TAG:
                self.problem(loc, f"unsupported tag {node.tag}", "remove the !tag")
            return [self.convert(child, (*loc, i), None) for i, child in enumerate(node.value)]
        if node.tag != _MAP_TAG:
            self.problem(loc, f"unsupported tag {node.tag}", "remove the !tag")
        duplicates: set[int] = set()  # a key repeated in this mapping itself (merged keys may be overridden)
        first: dict[str, Node] = {}
        for k_node, _ in node.value:
            if isinstance(k_node, ScalarNode) and k_node.tag != _MERGE_TAG:
                if k_node.value in first:
                    duplicates.add(id(k_node))
                    line = first[k_node.value].start_mark.line + 1
                    message = f"duplicate key '{k_node.value}' (first at line {line})"
                    self.problems.append(
                        self.make((*loc, k_node.value), message, "keep only one", mark=k_node.start_mark)
                    )
                    self.reported.add((*loc, k_node.value))
                else:
                    first[k_node.value] = k_node
        try:
            self.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as err:
            self.problems.append(self.make(loc, f"bad merge key: {err.problem}", mark=err.problem_mark))
            self.reported.add(loc)
            return {}
        result: dict[str, Any] = {}
        for k_node, v_node in node.value:  # merged pairs first, then this mapping's own: the last one wins
            if not isinstance(k_node, ScalarNode):
                self.problems.append(
                    self.make(
                        loc, "a key must be a plain word, not a list or mapping", mark=k_node.start_mark
                    )
                )
                self.reported.add(loc)
                continue
            if id(k_node) in duplicates:
                continue
            name = k_node.value
            result[name] = self.convert(v_node, (*loc, name), k_node)
        return result


def compose(text: str, shown: Path) -> Document:
    """Parse ``text`` (shown to the user as ``shown``) into a :class:`Document`; raise
    :class:`StoryValidationError` for syntax errors, an empty or non-mapping document and oversized input."""

    def fail(message: str, mark: Any, hint: str | None) -> StoryValidationError:
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        return StoryValidationError([Problem(shown, line, column, "", message, hint)], shown)

    try:
        loader = _Loader(text)
        root = loader.get_single_node()
        if root is not None:
            _measure(root)
    except _Limit as err:
        raise fail(err.message, err.mark, err.hint) from None
    except yaml.MarkedYAMLError as err:
        message = " ".join(str(x) for x in (err.context, err.problem) if x) or "invalid YAML"
        raise fail(
            f"YAML syntax error: {message}",
            err.problem_mark or err.context_mark,
            "check indentation, colons and quotes around this line",
        ) from None
    except yaml.reader.ReaderError as err:
        before = text[: err.position]
        mark = yaml.Mark(
            str(shown), err.position, before.count("\n"), err.position - (before.rfind("\n") + 1), None, None
        )
        raise fail(
            f"control character #x{err.character:04x} is not allowed", mark, "the file may not be a text file"
        ) from None
    except yaml.YAMLError as err:
        raise fail(f"YAML error: {err}", None, None) from None
    if root is None:
        start = yaml.Mark(str(shown), 0, 0, 0, None, None)
        raise fail("the story is empty", start, "run `storyreel init DIR` for a commented template")
    if not isinstance(root, MappingNode):
        raise fail(
            "the top level must be a mapping (title:, cast:, shots: …)",
            root.start_mark,
            "run `storyreel init DIR` for a commented template",
        )
    return Document(shown, text, loader, root)
