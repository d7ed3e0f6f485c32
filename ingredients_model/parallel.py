"""One clip over several GPUs: context parallelism through diffusers' ``enable_parallelism``.

Every process (one per GPU, started by ``torchrun`` or ``accelerate launch``) loads the pipeline, calls
``enable_context_parallel(pipe)`` and then makes the *same* pipeline call with the same seed. Inside the
transformer each process holds a contiguous slice of the tokens: diffusers' hooks split the text and the
video tokens (each on the sequence axis) where they enter block 0 and the rotary table where it enters each
block, Ulysses (all-to-all over heads) or ring attention (key/value chunks passed around, merged with the
log-sum-exp) lets every token attend to all others, and the last block's outputs are gathered again. The
identity path (router and perceiver cross-attention) works per video token against the people's keys and
values, which every process holds whole, so it needs no communication. Everything outside the transformer
(text encoder, VAE, scheduler) runs on every process; rank 0 writes the result.

Measured on CPU with gloo in 2 processes (tests): Ulysses and ring match one process, with and without step
caches. Not measured: uneven splits (3, 4 or 8 GPUs for the released model; gloo cannot gather unequal
slices) and anything on GPUs. diffusers'
``enable_parallelism`` needs an accelerator (it divides by ``torch.accelerator.device_count()``); ring
attention needs an attention op that returns the log-sum-exp (``_native_flash``, ``flash``, ``sage``,
``_native_cudnn``), which ``enable_context_parallel`` selects when the default ``native`` op is active.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from diffusers import ContextParallelConfig
from diffusers.hooks.context_parallel import apply_context_parallel, remove_context_parallel
from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput
from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

from ingredients_model.errors import IngredientsError

__all__ = [
    "RING_BACKEND",
    "context_parallel_plan",
    "divides_every_clip",
    "enable_context_parallel",
    "inside_context_parallel",
]

logger = logging.getLogger(__name__)

RING_BACKEND = "_native_flash"
"""Attention op chosen for ring attention when the default ``native`` op (no log-sum-exp) is active: PyTorch's
own flash kernel (bf16/fp16 on CUDA, no extra package)."""

_SEQUENCE = ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)
_ROTARY = ContextParallelInput(split_dim=0, expected_dims=2, split_output=False)
_GATHER = ContextParallelOutput(gather_dim=1, expected_dims=3)


def _last_block_is_injected(config: Any) -> bool:
    last = config.num_layers - 1
    return (
        bool(config.is_train_face)
        and last % config.cross_attn_interval == 0
        and last // config.cross_attn_interval < config.num_layers // config.cross_attn_interval
    )


def context_parallel_plan(transformer: Any) -> dict[str, Any]:
    """diffusers context-parallel plan of an ``IngredientsTransformer3DModel``.

    - every block's ``image_rotary_emb`` (cos, sin ``[video_tokens, head_dim]``): split on the token axis
      (at the blocks, not at the model input, so that the model may still return its output dataclass);
    - block 0 inputs ``hidden_states`` (video) and ``encoder_hidden_states`` (text): each split on the token
      axis, so every process holds a slice of both streams;
    - the last block's ``(hidden_states, encoder_hidden_states)``: gathered on the token axis (the output
      layers need the whole text length to separate it from the video tokens).
    """
    config = transformer.config
    if _last_block_is_injected(config):
        raise IngredientsError(
            "Context parallelism gathers the tokens after the last block, which must not carry an identity "
            f"injection (num_layers={config.num_layers}, cross_attn_interval={config.cross_attn_interval}).",
            hint="The released config (42 layers, interval 2) qualifies.",
        )
    return {
        "transformer_blocks.*": {"image_rotary_emb": [_ROTARY, _ROTARY]},
        "transformer_blocks.0": {"hidden_states": _SEQUENCE, "encoder_hidden_states": _SEQUENCE},
        f"transformer_blocks.{config.num_layers - 1}": [_GATHER, _GATHER],
    }


def divides_every_clip(transformer: Any, degree: int) -> bool:
    """Whether ``degree`` divides the text length and the video tokens of one latent frame (so any clip's)."""
    config = transformer.config
    per_frame = (config.sample_height // config.patch_size) * (config.sample_width // config.patch_size)
    return config.max_text_seq_length % degree == 0 and per_frame % degree == 0


def _transformer_of(pipe_or_transformer: Any) -> Any:
    return getattr(pipe_or_transformer, "transformer", pipe_or_transformer)


def enable_context_parallel(
    pipe_or_transformer: Any, ulysses_degree: int | None = None, ring_degree: int | None = None
) -> ContextParallelConfig:
    """Split one clip's tokens over the processes of the default process group (one per GPU).

    Default: Ulysses over all processes. Give ``ring_degree`` (and optionally ``ulysses_degree``; their
    product must not exceed the world size) for ring attention. A degree that does not divide the token counts
    (released: 226 text tokens, 1350 video tokens per latent frame; only 2 divides both) switches diffusers'
    uneven "anything" splitting on. Call once per process after loading the pipeline on its GPU;
    then call the pipeline with identical arguments and seed on every process. Returns the config applied.
    """
    transformer = _transformer_of(pipe_or_transformer)
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        raise IngredientsError(
            "Context parallelism needs one process per GPU in an initialised process group.",
            hint="Start the script with `torchrun --nproc-per-node N script.py` or `accelerate launch`, and "
            "call torch.distributed.init_process_group() (or accelerate.PartialState()) first.",
        )
    if torch.accelerator.device_count() == 0:
        raise IngredientsError(
            "Context parallelism needs GPUs: diffusers' enable_parallelism picks each process's device by "
            "dividing by torch.accelerator.device_count(), which is 0 here.",
            hint="Run on a machine with GPUs, or render shots side by side instead (one per GPU).",
        )
    world = torch.distributed.get_world_size()
    if ulysses_degree is None and ring_degree is None:
        ulysses_degree = world
    ulysses_degree, ring_degree = ulysses_degree or 1, ring_degree or 1
    if ulysses_degree * ring_degree < 2 or ulysses_degree * ring_degree > world:
        raise IngredientsError(
            f"ulysses_degree={ulysses_degree} x ring_degree={ring_degree} must be between 2 and the "
            f"{world} processes.",
            hint="Use ulysses_degree=N (all-to-all) or ring_degree=N, N = number of GPUs.",
        )
    degree = ulysses_degree * ring_degree
    uneven = not divides_every_clip(transformer, degree)
    if uneven and ulysses_degree > 1 and ring_degree > 1:
        raise IngredientsError(
            f"{degree} processes do not divide this model's token counts, and diffusers splits unevenly only "
            "for pure Ulysses or pure ring attention.",
            hint="Use ulysses_degree=N or ring_degree=N alone, or a degree that divides the tokens (2).",
        )
    config = ContextParallelConfig(
        ulysses_degree=ulysses_degree,
        ring_degree=ring_degree,
        ulysses_anything=uneven and ulysses_degree > 1,
        ring_anything=uneven and ring_degree > 1,
    )
    if ring_degree > 1:
        active = _active_backend(transformer)
        if active == AttentionBackendName.NATIVE:
            logger.info("Ring attention needs the log-sum-exp: attention backend %s", RING_BACKEND)
            transformer.set_attention_backend(RING_BACKEND)
    transformer.enable_parallelism(config=config, cp_plan=context_parallel_plan(transformer))
    return config


def _active_backend(transformer: Any) -> AttentionBackendName:
    for block in transformer.transformer_blocks:
        backend = block.attn1.processor._attention_backend
        if backend is not None:
            return AttentionBackendName(backend)
    return _AttentionBackendRegistry.get_active_backend()[0]


@contextlib.contextmanager
def inside_context_parallel(transformer: Any) -> Iterator[None]:
    """Hooks registered on the transformer inside this context (e.g. a step cache) run inside the
    context-parallel hooks, so they see each process's slice of the tokens. No-op without context parallelism.

    diffusers wraps a module's forward in the order hooks are registered (the last one outermost) and can only
    unlink a hook cleanly from the top of that chain, so the context-parallel hooks are taken off on entry and
    registered again on exit.
    """
    parallel = getattr(transformer, "_parallel_config", None)
    if parallel is None or parallel.context_parallel_config is None:
        yield
        return
    plan = context_parallel_plan(transformer)
    remove_context_parallel(transformer, dict(reversed(plan.items())))
    try:
        yield
    finally:
        apply_context_parallel(transformer, parallel.context_parallel_config, plan)
