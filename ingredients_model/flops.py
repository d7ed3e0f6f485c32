"""Floating-point operations of one clip, counted from the real configs on the meta device.

``torch.utils.flop_counter.FlopCounterMode`` counts the matrix products and convolutions of a forward pass
run on meta tensors (shapes only, no memory, no arithmetic): one denoising step of the transformer (batch 2
with classifier-free guidance), the VAE decode, the VAE encode of the conditioning image and the T5
encode of both prompts. Elementwise work (norms, activations, softmax) is not counted; it is memory-bound.

    python -m ingredients_model.flops [--steps 50] [--people 2] [--no-guidance] [--tflops 990]
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from ingredients_model import released
from ingredients_model.components import RELEASED_CLIP, ClipSize, build_models

__all__ = ["ClipFlops", "clip_flops"]

H100_BF16_DENSE_TFLOPS = 990.0
"""Dense bf16 tensor-core peak of an H100 SXM (TFLOP/s), the reference of the speed goal."""


@dataclass(frozen=True)
class ClipFlops:
    """FLOPs of one clip; ``step`` is one transformer call (both guidance halves in one batch)."""

    step: float
    step_attention: float
    step_identity: float
    vae_decode: float
    vae_encode: float
    text_encode: float
    steps: int

    @property
    def total(self) -> float:
        return self.steps * self.step + self.vae_decode + self.vae_encode + self.text_encode

    def seconds(self, tflops: float = H100_BF16_DENSE_TFLOPS) -> float:
        """Time at ``tflops`` TFLOP/s sustained: the dense limit."""
        return self.total / (tflops * 1e12)


def _count(fn) -> tuple[float, dict]:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    by_op = {str(op): n for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return float(counter.get_total_flops()), by_op


@functools.lru_cache(maxsize=8)
def clip_flops(
    clip: ClipSize = RELEASED_CLIP,
    people: int = released.TRAINED_PEOPLE,
    guidance: bool = True,
    steps: int = released.STEPS,
    size: str = "released",
) -> ClipFlops:
    """Count the FLOPs of one clip of ``size`` models ("released" or "tiny") on the meta device."""
    models = build_models(size, device="meta")
    transformer, vae, text_encoder = models["transformer"], models["vae"], models["text_encoder"]
    cfg = transformer.config
    meta = {"device": "meta", "dtype": torch.bfloat16}
    batch = 2 if guidance else 1
    frames, _, height, width = clip.latent_shape(cfg.in_channels)
    video_tokens = frames * (height // cfg.patch_size) * (width // cfg.patch_size)
    rotary = tuple(torch.empty(video_tokens, cfg.attention_head_dim, **meta) for _ in range(2))
    identity = None
    identity_flops = 0.0
    if people:
        ids = [torch.empty(1, cfg.LFE_id_dim, **meta) for _ in range(people)]
        vits = [[torch.empty(1, 577, cfg.LFE_vit_dim, **meta)] * cfg.LFE_num_scale for _ in range(people)]
        with torch.no_grad():
            identity = transformer.encode_identities(ids, vits)

    def step():
        transformer(
            hidden_states=torch.empty(batch, frames, cfg.in_channels, height, width, **meta),
            encoder_hidden_states=torch.empty(batch, cfg.max_text_seq_length, cfg.text_embed_dim, **meta),
            timestep=torch.zeros(batch, device="meta", dtype=torch.long),
            image_rotary_emb=rotary,
            identity=identity,
            cfg_routing=released.CFG_ROUTING if guidance else None,  # as the pipeline calls it
        )

    step_total, by_op = _count(step)
    # attention scores and weighted sums (batched matmuls of the self-attention, math SDPA on meta);
    # the identity path's products are plain matmuls (mm), the other projections addmm (with bias)
    attention = by_op.get("aten.bmm", 0.0)
    identity_flops = by_op.get("aten.mm", 0.0)
    latent = torch.empty(1, vae.config.latent_channels, frames, height, width, **meta)
    decode, _ = _count(lambda: vae.decode(latent))
    image = torch.empty(1, 3, 1, clip.height, clip.width, **meta)
    encode, _ = _count(lambda: vae.encode(image))
    tokens = torch.zeros(batch, cfg.max_text_seq_length, device="meta", dtype=torch.long)
    text, _ = _count(lambda: text_encoder(tokens))
    return ClipFlops(
        step=step_total,
        step_attention=attention,
        step_identity=identity_flops,
        vae_decode=decode,
        vae_encode=encode,
        text_encode=text,
        steps=steps,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=released.STEPS)
    parser.add_argument("--people", type=int, default=released.TRAINED_PEOPLE)
    parser.add_argument("--no-guidance", action="store_true")
    parser.add_argument("--tflops", type=float, default=H100_BF16_DENSE_TFLOPS, help="sustained TFLOP/s")
    args = parser.parse_args(argv)
    flops = clip_flops(people=args.people, guidance=not args.no_guidance, steps=args.steps)
    print(
        f"One clip {RELEASED_CLIP.frames}x{RELEASED_CLIP.height}x{RELEASED_CLIP.width}, {args.steps} steps, "
        f"{'CFG (batch 2)' if not args.no_guidance else 'no CFG'}, {args.people} people (counted on meta):"
    )
    for name, value in asdict(flops).items():
        if name != "steps":
            print(f"  {name:<17} {value:.3e} FLOP")
    dense = flops.total - flops.steps * flops.step_identity
    at = f"{args.tflops:g} TFLOP/s"
    print(f"  {'total':<17} {flops.total:.3e} FLOP = {flops.seconds(args.tflops):.1f} s at {at}")
    print(f"  {'without identity':<17} {dense:.3e} FLOP = {dense / (args.tflops * 1e12):.1f} s")


if __name__ == "__main__":
    main()
