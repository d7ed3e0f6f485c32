"""GPU memory on paper: parameter bytes counted from the real configs (meta device), activations estimated.

Computed, not measured. Parameter bytes are exact: every model is built with its released config on the meta
device and its parameters and persistent buffers are counted. Activation figures are estimates from tensor
shapes with the assumptions stated in ``ASSUMPTIONS``; ``benchmarks/gpu_clip.py`` measures the real peaks on a
GPU. Figures are in GB (10^9 bytes) of tensors; the CUDA context (about 0.5 GB) and allocator fragmentation
come on top (``HEADROOM``).

    python -m ingredients_model.memory [--no-guidance] [--dtype bfloat16] [--json FILE]

The people's identity features (21 blocks' keys and values of 64 tokens per person) are a few MB and not
counted.
"""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ingredients_model.components import RELEASED_CLIP, ClipSize, build_models

__all__ = [
    "ASSUMPTIONS",
    "HEADROOM",
    "MEMORY_MODE_ESTIMATES",
    "ComponentMemory",
    "MemoryEstimate",
    "activation_bytes",
    "cache_state_bytes",
    "component_memory",
    "estimate_memory",
    "required_free_bytes",
]

GB = 1e9

HEADROOM = (1.10, 1.0 * GB)
"""Free GPU memory asked for on top of an estimate: x1.10 for allocator fragmentation, + 1 GB for the CUDA
context and kernels' workspaces."""

STEP_HIDDEN_TENSORS = 12
"""Hidden-sized tensors ``[batch, text + video tokens, width]`` alive at once inside a transformer block: the
feed-forward's 4x-wide hidden and its activation (8), the residual stream, its normalised copy and an
attention or projection output (about 4). Memory-efficient attention (SDPA's flash or memory-efficient
kernels, never a tokens x tokens matrix: that would be 60 GB) is assumed."""

VAE_FEATURE_MAPS = 4
"""Top-resolution feature maps (128 channels) alive at once while the VAE decodes one batch of frames."""

VAE_FRAMES_PER_BATCH = 10
"""Output frames the CogVideoX VAE decodes at once: 2 latent frames (8 frames) plus its causal-conv cache."""

VAE_TILE_FRACTION = 0.25
"""Share of the frame area one tile covers with VAE tiling (240x360 of 480x720 by default)."""

ASSUMPTIONS = (
    "weights: exact parameter and persistent-buffer counts of the released configs, 2 bytes each (bf16/fp16)",
    f"transformer step: {STEP_HIDDEN_TENSORS} hidden-sized tensors alive at once, memory-efficient attention",
    f"VAE decode: {VAE_FEATURE_MAPS} feature maps of 128 channels x {VAE_FRAMES_PER_BATCH} frames at full "
    f"resolution; tiled: x{VAE_TILE_FRACTION}",
    "T5 encode and VAE encode of the one conditioning image: small next to the above (counted as 0)",
    "model_offload: one model on the GPU at a time (diffusers model CPU offload); VAE tiled",
    "group_offload: one transformer block on the GPU at a time, the transformer's embeddings, output layers "
    "and face modules resident; T5 and VAE one layer at a time; VAE tiled",
    "sequential_offload: every layer's weights moved in when it runs (the largest layer counted); VAE tiled",
)


@dataclass(frozen=True)
class ComponentMemory:
    """Parameters, persistent buffers and their bytes of one model at its released size."""

    name: str
    parameters: int
    buffers: int
    bytes: int
    largest_layer_bytes: int


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak of tensors on the GPU for one clip in a memory mode, and what it is made of."""

    mode: str
    peak_bytes: int
    parts: dict[str, int]

    @property
    def required_free_bytes(self) -> int:
        """Free GPU memory to ask for: the peak with ``HEADROOM``."""
        return int(self.peak_bytes * HEADROOM[0] + HEADROOM[1])


@functools.lru_cache(maxsize=1)
def _meta_models() -> dict[str, torch.nn.Module]:
    return build_models("released", device="meta")


def _tokens(clip: ClipSize) -> tuple[int, int]:
    """(text, video) tokens of one clip for the released transformer."""
    cfg = _meta_models()["transformer"].config
    frames, _, height, width = clip.latent_shape(cfg.in_channels)
    return cfg.max_text_seq_length, frames * (height // cfg.patch_size) * (width // cfg.patch_size)


def _largest_layer(model: torch.nn.Module, bytes_per_element: int) -> int:
    """Bytes of the largest module's own parameters and buffers (what sequential offload moves at once)."""
    largest = 0
    for module in model.modules():
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        largest = max(largest, sum(t.numel() for t in tensors) * bytes_per_element)
    return largest


@functools.lru_cache(maxsize=4)
def component_memory(bytes_per_element: int = 2) -> tuple[ComponentMemory, ...]:
    """Transformer, T5-XXL text encoder and CogVideoX VAE at their released sizes, counted on the meta device.

    Shared tensors (T5's tied embedding) are counted once; persistent buffers (the transformer's learned
    positional embedding, 55 M elements) count like parameters."""
    result = []
    for name, model in _meta_models().items():
        params = {id(p): p.numel() for p in model.parameters()}
        state = model.state_dict()
        buffers = sum(b.numel() for n, b in model.named_buffers() if n in state)
        total = sum(params.values()) + buffers
        result.append(
            ComponentMemory(
                name=name,
                parameters=sum(params.values()),
                buffers=buffers,
                bytes=total * bytes_per_element,
                largest_layer_bytes=_largest_layer(model, bytes_per_element),
            )
        )
    return tuple(result)


def _component(name: str, bytes_per_element: int) -> ComponentMemory:
    return next(c for c in component_memory(bytes_per_element) if c.name == name)


def _resident_transformer_bytes(bytes_per_element: int) -> int:
    """Transformer parameters outside its blocks (embeddings, output layers, face modules), which group
    offloading keeps on the GPU."""
    state = _meta_models()["transformer"].state_dict()
    return bytes_per_element * sum(
        t.numel() for name, t in state.items() if not name.startswith("transformer_blocks.")
    )


def activation_bytes(
    clip: ClipSize = RELEASED_CLIP, guidance: bool = True, bytes_per_element: int = 2
) -> dict[str, int]:
    """Estimated activation peaks (bytes) of the phases of one clip: ``transformer_step``, ``vae_decode``
    (untiled) and ``vae_decode_tiled``. See ``ASSUMPTIONS``."""
    cfg = _meta_models()["transformer"].config
    batch = 2 if guidance else 1
    hidden = batch * sum(_tokens(clip)) * cfg.num_attention_heads * cfg.attention_head_dim * bytes_per_element
    feature_map = 128 * VAE_FRAMES_PER_BATCH * clip.height * clip.width * bytes_per_element
    return {
        "transformer_step": STEP_HIDDEN_TENSORS * hidden,
        "vae_decode": VAE_FEATURE_MAPS * feature_map,
        "vae_decode_tiled": int(VAE_FEATURE_MAPS * feature_map * VAE_TILE_FRACTION),
    }


def cache_state_bytes(
    clip: ClipSize = RELEASED_CLIP, guidance: bool = True, bytes_per_element: int = 2, max_order: int = 1
) -> dict[str, int]:
    """Bytes a step cache keeps between steps, at full size (bf16 state):

    - ``first_block``: block 0's output and residual, and the residual of the other blocks (video and text);
    - ``mag``: the previous residual of the video tokens;
    - ``taylorseer``: ``max_order + 1`` Taylor factors of every block's attention (video + text) and
      feed-forward (video + text) outputs: about 0.9 GB per block;
    - ``taylorseer_lite``: ``max_order + 1`` factors of the output projection only.
    """
    cfg = _meta_models()["transformer"].config
    batch = 2 if guidance else 1
    text, video = _tokens(clip)
    per_token = batch * cfg.num_attention_heads * cfg.attention_head_dim * bytes_per_element
    out_width = cfg.patch_size**2 * cfg.out_channels
    factors = max_order + 1
    return {
        "first_block": (3 * video + 2 * text) * per_token,
        "mag": video * per_token,
        "taylorseer": cfg.num_layers * factors * 2 * (video + text) * per_token,
        "taylorseer_lite": factors * batch * video * out_width * bytes_per_element,
    }


MEMORY_MODE_ESTIMATES = (
    "none",
    "none_text_encoder_freed",
    "model_offload",
    "group_offload",
    "sequential_offload",
)


def estimate_memory(
    clip: ClipSize = RELEASED_CLIP, guidance: bool = True, bytes_per_element: int = 2
) -> list[MemoryEstimate]:
    """Estimated GPU peak for one clip in each memory mode (see ``ASSUMPTIONS``); ``none_text_encoder_freed``
    is ``none`` after ``pipe.free_text_encoder()`` (prompts passed as embeddings)."""
    transformer = _component("transformer", bytes_per_element)
    text_encoder = _component("text_encoder", bytes_per_element)
    vae = _component("vae", bytes_per_element)
    act = activation_bytes(clip, guidance, bytes_per_element)
    resident = _resident_transformer_bytes(bytes_per_element)
    block = (transformer.bytes - resident) // _meta_models()["transformer"].config.num_layers
    weights = {"transformer": transformer.bytes, "text_encoder": text_encoder.bytes, "vae": vae.bytes}
    phase_peak = max(act["transformer_step"], act["vae_decode"])

    def estimate(mode: str, parts: dict[str, int]) -> MemoryEstimate:
        return MemoryEstimate(mode=mode, peak_bytes=sum(parts.values()), parts=parts)

    largest_layer = max(
        transformer.largest_layer_bytes, text_encoder.largest_layer_bytes, vae.largest_layer_bytes
    )
    return [
        estimate("none", {**weights, "activations": phase_peak}),
        estimate(
            "none_text_encoder_freed",
            {"transformer": transformer.bytes, "vae": vae.bytes, "activations": phase_peak},
        ),
        estimate(
            "model_offload",
            max(
                (
                    {"transformer": transformer.bytes, "activations": act["transformer_step"]},
                    {"text_encoder": text_encoder.bytes},
                    {"vae": vae.bytes, "activations": act["vae_decode_tiled"]},
                ),
                key=lambda parts: sum(parts.values()),
            ),
        ),
        estimate(
            "group_offload",
            {
                "transformer_resident": resident,
                "transformer_block": block,
                "activations": act["transformer_step"],
            },
        ),
        estimate(
            "sequential_offload",
            {
                "largest_layer": largest_layer,
                "activations": max(act["transformer_step"], act["vae_decode_tiled"]),
            },
        ),
    ]


def required_free_bytes(mode: str) -> int:
    """Free GPU memory (bytes, with ``HEADROOM``) that ``mode`` needs for one released clip with guidance."""
    return next(e for e in estimate_memory() if e.mode == mode).required_free_bytes


def _print_report(guidance: bool, bytes_per_element: int) -> dict:
    components = component_memory(bytes_per_element)
    print(f"Parameters (counted on the meta device, {bytes_per_element} bytes each):")
    for c in components:
        print(
            f"  {c.name:<13} {c.parameters / 1e9:6.3f} B params + {c.buffers / 1e6:5.1f} M buffer "
            f"= {c.bytes / GB:6.2f} GB   (largest layer {c.largest_layer_bytes / 1e6:.0f} MB)"
        )
    print(f"  {'total':<13} {sum(c.bytes for c in components) / GB:42.2f} GB")
    act = activation_bytes(RELEASED_CLIP, guidance, bytes_per_element)
    clip = RELEASED_CLIP
    print(
        f"\nActivations, estimated ({clip.frames}x{clip.height}x{clip.width}, "
        f"{'CFG batch 2' if guidance else 'batch 1'}):"
    )
    for name, value in act.items():
        print(f"  {name:<17} {value / GB:6.2f} GB")
    caches = cache_state_bytes(RELEASED_CLIP, guidance, bytes_per_element)
    print("\nStep-cache state kept between steps:")
    for name, value in caches.items():
        print(f"  {name:<17} {value / GB:6.2f} GB")
    estimates = estimate_memory(RELEASED_CLIP, guidance, bytes_per_element)
    print("\nEstimated GPU peak per memory mode (tensors; 'free needed' adds x1.1 + 1 GB):")
    for e in estimates:
        parts = ", ".join(f"{k} {v / GB:.2f}" for k, v in e.parts.items())
        needed = e.required_free_bytes / GB
        print(f"  {e.mode:<24} {e.peak_bytes / GB:6.1f} GB   free needed {needed:5.1f} GB   ({parts})")
    print("\nAssumptions:\n" + "\n".join(f"  - {a}" for a in ASSUMPTIONS))
    return {
        "components": [asdict(c) for c in components],
        "activations": act,
        "cache_state": caches,
        "modes": [{**asdict(e), "required_free_bytes": e.required_free_bytes} for e in estimates],
        "assumptions": list(ASSUMPTIONS),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-guidance", action="store_true", help="without classifier-free guidance")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    bytes_per_element = 4 if args.dtype == "float32" else 2
    report = _print_report(not args.no_guidance, bytes_per_element)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
