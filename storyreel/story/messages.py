"""pydantic's validation errors → :class:`~storyreel.story.problems.Problem` s in the user's words.

Each error gets the position of its field, a plain message (``expected a whole number, got 'six'``) and,
where one helps, a hint (the allowed keys or values, the closest spelling).
"""

from __future__ import annotations

import re
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from storyreel.story.positions import Document
from storyreel.story.problems import Problem, did_you_mean
from storyreel.story.schema import Story

__all__ = ["pydantic_problem"]


def _show(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (for listing its allowed keys)."""
    annotation: Any = Story
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return None
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation


_TYPE_MESSAGES = {
    "string_type": ("expected text", "put the text in quotes"),
    "int_type": ("expected a whole number", None),
    "int_parsing": ("expected a whole number", None),
    "int_from_float": ("expected a whole number", None),
    "float_type": ("expected a number", None),
    "float_parsing": ("expected a number", None),
    "finite_number": ("expected a finite number", None),
    "bool_type": ("expected true or false", None),
    "bool_parsing": ("expected true or false", None),
    "list_type": ("expected a list", "write one '- item' per line, or the items in square brackets"),
    "dict_type": ("expected a mapping of key: value lines", None),
    "model_type": ("expected a mapping of key: value lines", None),
    "model_attributes_type": ("expected a mapping of key: value lines", None),
    "path_type": ("expected a file path", None),
}


def pydantic_problem(doc: Document, error: dict[str, Any]) -> Problem | None:
    """The problem for one pydantic ``error`` (``None`` when its field was already reported)."""
    loc = tuple(error["loc"])
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    key = bool(loc) and loc[-1] == "[key]"
    if key:
        loc = loc[:-1]
    if kind == "story" and ctx.get("field"):
        loc = (*loc, ctx["field"])
    if any(loc[:end] in doc.reported for end in range(len(loc) + 1)):
        return None
    hint: str | None = None
    if kind == "story":
        message, hint = ctx["message"], ctx.get("hint")
    elif kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = list(model.model_fields) if model else []
        message = f"unknown key '{loc[-1]}'"
        hint = did_you_mean(str(loc[-1]), allowed) + (
            "allowed here: " + ", ".join(allowed) if allowed else ""
        )
        key = True
    elif kind == "missing":
        message, hint = f"missing '{loc[-1]}'", f"add `{loc[-1]}: …` here"
        model = _model_at(loc[:-1])
        if model is not None and loc[-1] in model.model_fields:
            description = model.model_fields[str(loc[-1])].description
            hint = f"add `{loc[-1]}:` ({description})" if description else hint
    elif kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = re.findall(r"'([^']*)'", expected)
        message = f"expected {expected}, got {_show(value)}"
        hint = (did_you_mean(str(value), choices) + "allowed: " + ", ".join(choices)) if choices else None
    elif kind == "too_short" and loc == ("shots",):
        message, hint = "no shots", "add at least one shot under `shots:`"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        word = {
            "greater_than": "more than",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "less_than_equal": "at most",
        }[kind]
        bound = next(iter(ctx.values()), "?")
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        message = f"must be {word} {bound}, got {_show(value)}"
    elif kind == "string_too_short":
        message = "must not be empty"
    elif kind == "string_too_long":
        message = f"too long (at most {ctx.get('max_length')} characters)"
    elif kind in _TYPE_MESSAGES:
        expected, hint = _TYPE_MESSAGES[kind]
        message = f"{expected}, got {_show(value)}"
    else:
        message = f"{error['msg']}, got {_show(value)}"
    return doc.make(loc, message, hint, key=key)
