"""The step cache of a shot (``cache:`` in story.yaml, ``--cache`` on the command line), as the model's
pipeline takes it: diffusers' FirstBlockCache, MagCache or TaylorSeer (:mod:`ingredients_model.caching`).

A setting is written as:

- ``none``: no cache (a shot or the command line turns off a cache its story's defaults set);
- a kind alone, ``first_block`` or ``taylorseer``: that cache with diffusers' default options;
- a mapping ``{kind: KIND, OPTION: VALUE, ...}`` whose options are the diffusers config's field names,
  e.g. ``{kind: first_block, threshold: 0.05}``, ``{kind: taylorseer, cache_interval: 5}`` or
  ``{kind: mag, threshold: 0.06, mag_ratios: [...]}``.

:func:`cache_spec` turns a setting into the spec the pipeline takes (``None``: no cache), checked by the
model package's own rules, so a bad option is reported where the user wrote it, before anything renders.
"""

from __future__ import annotations

from typing import Any

import yaml

from storyreel.errors import StoryreelError

__all__ = ["CACHE_OFF", "CacheSetting", "cache_kind", "cache_spec", "first_block_spec", "parse_cache_option"]

CACHE_OFF = "none"
CacheSetting = str | dict[str, Any]
"""A cache as written in story.yaml or given to ``--cache`` (see the module docstring)."""

_EXAMPLES = "none, taylorseer, {kind: first_block, threshold: 0.05} or {kind: taylorseer, cache_interval: 5}"


def first_block_spec(threshold: float) -> dict[str, Any]:
    """The spec ``--cache-threshold X`` stands for."""
    return {"kind": "first_block", "threshold": threshold}


def cache_spec(setting: CacheSetting | None) -> dict[str, Any] | None:
    """The pipeline's ``cache=`` spec for a setting (``None`` or ``none``: no cache), checked.

    Raises :class:`StoryreelError` with the model package's message and hint when the kind or an option is
    wrong (imports torch, only when a cache is set).
    """
    if setting is None:
        return None
    if isinstance(setting, str):
        if setting.strip() == CACHE_OFF:
            return None
        spec: dict[str, Any] = {"kind": setting.strip()}
    elif isinstance(setting, dict):
        spec = dict(setting)
    else:
        raise StoryreelError(f"a cache is a name or a mapping, not {setting!r}", f"for example: {_EXAMPLES}")
    if "kind" not in spec:
        raise StoryreelError("a cache mapping needs `kind`", f"for example: {_EXAMPLES}")
    from ingredients_model import released
    from ingredients_model.caching import cache_config
    from ingredients_model.errors import IngredientsError

    try:
        cache_config(spec, released.STEPS)
    except IngredientsError as err:
        raise StoryreelError(err.message.rstrip("."), err.hint) from None
    except (TypeError, ValueError) as err:  # raised by a diffusers config itself
        message = f"bad {spec['kind']} cache options: {err}"
        raise StoryreelError(message, f"for example: {_EXAMPLES}") from None
    return spec


def cache_kind(spec: dict[str, Any] | None) -> str | None:
    """The kind of a spec from :func:`cache_spec` (None: no cache)."""
    return None if spec is None else spec["kind"]


def parse_cache_option(text: str) -> CacheSetting:
    """``--cache TEXT``: a setting written as in story.yaml (YAML flow style, e.g. ``{kind: mag, ...}``)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise StoryreelError(f"cannot read --cache {text!r}: {err}", f"for example: {_EXAMPLES}") from None
    if not isinstance(value, str | dict):
        raise StoryreelError(f"--cache {text!r} is not a cache", f"for example: {_EXAMPLES}")
    cache_spec(value)
    return value
