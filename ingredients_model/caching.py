"""Step caching for the denoising loop: diffusers' FirstBlockCache, MagCache and TaylorSeer.

One spec chooses the cache, a mapping ``{"kind": KIND, **options}`` whose options are the diffusers config's
own field names (or the diffusers config object itself):

- ``{"kind": "first_block", "threshold": 0.05}``: ``FirstBlockCacheConfig``. After block 0, the rest of the
  blocks are skipped when block 0's residual changed by less than ``threshold`` (relative absmean) since the
  last computed step; the cached residual of the skipped blocks is added instead. Skip decisions depend on the
  data, so it cannot run under context parallelism (each rank sees other tokens and would decide differently).
- ``{"kind": "mag", "threshold": 0.06, "mag_ratios": [...]}``: ``MagCacheConfig``. Skips by an error
  accumulated from per-step magnitude ratios of the model's residual, measured once per checkpoint with
  ``{"kind": "mag", "calibrate": true}`` (no skipping; diffusers prints the ratios at the end of the call).
  Options ``max_skip_steps`` (3), ``retention_ratio`` (0.2: the first 20 % of steps always compute).
  ``num_inference_steps`` is filled in from the pipeline call.
- ``{"kind": "taylorseer", "cache_interval": 5}``: ``TaylorSeerCacheConfig``. Every block's self-attention
  and feed-forward outputs are computed every ``cache_interval`` steps and predicted by a Taylor expansion
  (order ``max_order``, 1) in between, after ``disable_cache_before_step`` (3) warm-up steps.
  ``use_lite_mode`` predicts only the output projection and skips whole blocks (far less memory, coarser).
  ``taylor_factors_dtype``: "bfloat16" (default) or "float32".

Bit-identity: ``threshold: 0`` (first_block, mag) and ``cache_interval: 1`` (taylorseer) compute every step
and return exactly the uncached result. (MagCache at threshold 0 would still skip a step whose calibrated
ratio is exactly 1.0 after the retention steps; measured ratios are means of floats and never are.)

Memory kept by each cache at full size: see ``ingredients_model.memory``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any

import torch
from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

from ingredients_model.errors import IngredientsError
from ingredients_model.parallel import inside_context_parallel

__all__ = [
    "CACHE_KINDS",
    "TAYLORSEER_IDENTIFIERS",
    "CacheSpec",
    "cache_config",
    "cache_kind",
    "step_cache",
]

CacheSpec = Mapping[str, Any] | FirstBlockCacheConfig | MagCacheConfig | TaylorSeerCacheConfig
"""What ``cache=`` accepts: ``{"kind": ..., **options}`` or a diffusers cache config."""

CACHE_KINDS: dict[str, type] = {
    "first_block": FirstBlockCacheConfig,
    "mag": MagCacheConfig,
    "taylorseer": TaylorSeerCacheConfig,
}

TAYLORSEER_IDENTIFIERS = [r"^transformer_blocks\.\d+\.attn1$", r"^transformer_blocks\.\d+\.ff$"]
"""Modules TaylorSeer predicts in full mode. diffusers' default patterns end in ``attn`` and match none of
this transformer's modules (its self-attention is ``attn1``)."""

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}
_FILLED_IN = {"mag": ("num_inference_steps",)}
_HIDDEN = {"taylorseer": ("skip_predict_identifiers", "cache_identifiers")}


def cache_kind(config: Any) -> str:
    """The spec kind of a diffusers cache config object."""
    for kind, cls in CACHE_KINDS.items():
        if isinstance(config, cls):
            return kind
    raise IngredientsError(
        f"Unsupported cache config {type(config).__name__}.",
        hint=f"Use a spec {{'kind': ...}} with kind one of {', '.join(CACHE_KINDS)}.",
    )


def _options(kind: str) -> list[str]:
    hidden = _FILLED_IN.get(kind, ()) + _HIDDEN.get(kind, ())
    return [f.name for f in fields(CACHE_KINDS[kind]) if f.name not in hidden]


def _check_number(kind: str, name: str, value: Any, minimum: float, integer: bool = False) -> None:
    wanted = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted) or value < minimum:
        raise IngredientsError(
            f"Cache {kind!r}: {name} must be {'an integer' if integer else 'a number'} >= {minimum}, "
            f"not {value!r}.",
            hint=f"Example: {{'kind': {kind!r}, {name!r}: {1 if integer else 0.05}}}.",
        )


def _validate(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    options = dict(options)
    if kind in ("first_block", "mag") and "threshold" in options:
        _check_number(kind, "threshold", options["threshold"], 0)
        options["threshold"] = float(options["threshold"])
    if kind == "mag":
        for name in ("max_skip_steps",):
            if name in options:
                _check_number(kind, name, options[name], 0, integer=True)
        if "retention_ratio" in options:
            _check_number(kind, "retention_ratio", options["retention_ratio"], 0)
        if options.get("mag_ratios") is None and not options.get("calibrate", False):
            raise IngredientsError(
                "Cache 'mag' needs the model's magnitude ratios (mag_ratios), measured once per checkpoint.",
                hint="Run one call with cache={'kind': 'mag', 'calibrate': True}; diffusers prints the "
                "ratios at the end. Pass them as cache={'kind': 'mag', 'mag_ratios': [...]}.",
            )
        ratios = options.get("mag_ratios")
        if ratios is not None:
            ratios = torch.as_tensor(ratios, dtype=torch.float32).flatten()
            if ratios.numel() == 0 or not torch.isfinite(ratios).all() or (ratios <= 0).any():
                raise IngredientsError(
                    "Cache 'mag': mag_ratios must be a non-empty list of positive numbers.",
                    hint="Use the list printed by a calibration call "
                    "(cache={'kind': 'mag', 'calibrate': True}).",
                )
            options["mag_ratios"] = ratios
    if kind == "taylorseer":
        for name, minimum in (("cache_interval", 1), ("max_order", 0), ("disable_cache_before_step", 0)):
            if name in options:
                _check_number(kind, name, options[name], minimum, integer=True)
        if options.get("disable_cache_after_step") is not None:
            _check_number(kind, "disable_cache_after_step", options["disable_cache_after_step"], 0, True)
        dtype = options.get("taylor_factors_dtype")
        if isinstance(dtype, str):
            if dtype not in _DTYPES:
                raise IngredientsError(
                    f"Cache 'taylorseer': unknown taylor_factors_dtype {dtype!r}.",
                    hint=f"Use one of: {', '.join(_DTYPES)}.",
                )
            options["taylor_factors_dtype"] = _DTYPES[dtype]
        if not options.get("use_lite_mode", False):
            options["cache_identifiers"] = list(TAYLORSEER_IDENTIFIERS)
    return options


def cache_config(
    cache: CacheSpec | None, num_inference_steps: int, cache_threshold: float | None = None
) -> FirstBlockCacheConfig | MagCacheConfig | TaylorSeerCacheConfig | None:
    """The diffusers cache config for a spec (``None``: no cache), checked, with ``num_inference_steps``
    filled in for MagCache. ``cache_threshold=x`` is short for ``{"kind": "first_block", "threshold": x}``."""
    if cache_threshold is not None:
        if cache is not None:
            raise IngredientsError(
                "Pass either cache or cache_threshold, not both.",
                hint="cache_threshold=x is short for cache={'kind': 'first_block', 'threshold': x}.",
            )
        if (
            isinstance(cache_threshold, bool)
            or not isinstance(cache_threshold, int | float)
            or cache_threshold < 0
        ):
            raise IngredientsError(
                f"cache_threshold must be a number >= 0, not {cache_threshold!r}.",
                hint="0 reproduces the uncached result; 0.05-0.1 skips steps.",
            )
        cache = {"kind": "first_block", "threshold": cache_threshold}
    if cache is None:
        return None
    if not isinstance(cache, Mapping):
        kind = cache_kind(cache)
        if kind == "mag" and cache.num_inference_steps != num_inference_steps:
            raise IngredientsError(
                f"MagCacheConfig(num_inference_steps={cache.num_inference_steps}) but the call runs "
                f"{num_inference_steps} steps.",
                hint="Pass a spec {'kind': 'mag', ...}: the pipeline fills in the step count.",
            )
        if kind == "taylorseer" and not cache.use_lite_mode and not cache.cache_identifiers:
            raise IngredientsError(
                "TaylorSeerCacheConfig without cache_identifiers matches no module of this transformer.",
                hint="Pass a spec {'kind': 'taylorseer', ...} or "
                "cache_identifiers=ingredients_model.caching.TAYLORSEER_IDENTIFIERS.",
            )
        return cache
    options = dict(cache)
    kind = options.pop("kind", None)
    if kind not in CACHE_KINDS:
        raise IngredientsError(
            f"Unknown cache kind {kind!r}.", hint=f"Use 'kind': one of {', '.join(CACHE_KINDS)}."
        )
    unknown = sorted(set(options) - set(_options(kind)))
    if unknown:
        raise IngredientsError(
            f"Cache {kind!r} has no option(s) {', '.join(map(repr, unknown))}.",
            hint=f"Options of {kind!r}: {', '.join(_options(kind))}.",
        )
    options = _validate(kind, options)
    if kind == "mag":
        options["num_inference_steps"] = num_inference_steps
    return CACHE_KINDS[kind](**options)


@contextlib.contextmanager
def step_cache(
    transformer: Any, cache: CacheSpec | None, num_inference_steps: int, cache_threshold: float | None = None
) -> Iterator[FirstBlockCacheConfig | MagCacheConfig | TaylorSeerCacheConfig | None]:
    """Enable the cache of a spec on ``transformer`` (a diffusers ``CacheMixin``) for the ``with`` body, then
    remove it, so every call starts from a fresh cache state. Yields the diffusers config (or ``None``)."""
    config = cache_config(cache, num_inference_steps, cache_threshold)
    if config is None:
        yield None
        return
    if transformer.is_cache_enabled:
        raise IngredientsError(
            "A cache is already enabled on the transformer.",
            hint="Call pipe.transformer.disable_cache() or leave cache unset.",
        )
    if (
        isinstance(config, FirstBlockCacheConfig)
        and getattr(transformer, "_parallel_config", None) is not None
    ):
        raise IngredientsError(
            "The first-block cache cannot run under context parallelism: its skip decision depends on the "
            "tokens each GPU holds, so the GPUs would disagree.",
            hint="Use cache={'kind': 'mag', ...} or {'kind': 'taylorseer', ...}, whose decisions depend "
            "on the step only.",
        )
    with inside_context_parallel(transformer):  # the cache's block hooks must see the split tokens
        transformer.enable_cache(config)
    try:
        yield config
    finally:
        transformer.disable_cache()
