"""Milliseconds per denoising step and peak memory of IngredientsTransformer3DModel for N = 1, 2, 4 people.

Reduced config (stated in the output): released widths everywhere (inner 3072 = 48 heads x 64, released
facial extractor, perceiver cross-attention and router sizes, 577-token ViT features, 1280-d id vectors), but
only ``--layers`` transformer blocks (default 2, so one routed block) and a small latent (default 2 x 30 x 40
latent frames x pixels = 600 video tokens) with a 32-token text.

Paths per step:
  once    identity features encoded once per shot (``encode_identities``) and passed as ``identity=`` (ours)
  raw     ``id_cond`` / ``id_vit_hidden`` at every step: facial extractor, router keys and perceiver K/V
          recomputed per step (as the released code does)
  naive   as ``raw`` plus the released per-person perceiver: the video-token query and output projections
          run once per person instead of once (kept here for comparison only)

Peak memory: live tensor memory at the peak of one step above what was allocated before it (CUDA allocator
statistics; on CPU the torch profiler's allocation events). It excludes the weights.

    python benchmarks/transformer_step.py [--frames 2 --height 30 --width 40 --steps 2 --threads 1]
"""

from __future__ import annotations

import argparse
import functools
import time
import types
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from ingredients_model.transformer import IngredientsTransformer3DModel

TEXT_TOKENS = 32


def naive_face_injection(self, index, identity, mode, scale, need_logits, from_first_half):
    """Released-style injection: diffusers' PerceiverCrossAttention run once per person, then routed (this
    benchmark runs single-sample batches, so every sample routes itself: ``from_first_half`` is False)."""
    return functools.partial(_naive_injection, self, index, identity, scale)


def _naive_injection(self, index, identity, scale, hidden_states):
    attn, router = self.perceiver_cross_attention[index], self.router[index]
    outs = [attn(identity.tokens[:, n], hidden_states) for n in range(identity.num_people)]
    if identity.num_people == 1:
        return hidden_states + scale * outs[0], None
    weights = torch.softmax(router(hidden_states, identity.tokens).float(), dim=-1).to(hidden_states.dtype)
    mixed = sum(weights[..., n : n + 1] * out for n, out in enumerate(outs))
    return hidden_states + scale * mixed, None


def peak_mib(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory of live tensors (MiB) during ``fn()`` above what was allocated before it.

    CUDA: the caching allocator's peak. CPU: the running sum of the torch profiler's per-operator allocations
    and frees (operator granularity: temporaries freed inside one operator are not seen).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


def measure(fn: Callable[[], object], steps: int, device: torch.device) -> tuple[float, float]:
    """Fastest of ``steps`` timed calls of ``fn()`` in ms, and the peak memory of a first, untimed call.

    CUDA: wall time. CPU: process CPU time, which other processes on a shared machine barely inflate (run with
    one thread, ``--threads 1``, for it to equal the wall time of a quiet machine).
    """
    memory = peak_mib(fn, device)
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((clock() - start) * 1000)
    return min(times), memory


def build(
    args: argparse.Namespace, device: torch.device, dtype: torch.dtype
) -> IngredientsTransformer3DModel:
    torch.manual_seed(0)
    model = IngredientsTransformer3DModel(
        num_layers=args.layers,
        sample_frames=(args.frames - 1) * 4 + 1,
        sample_height=args.height,
        sample_width=args.width,
        max_text_seq_length=TEXT_TOKENS,
    )
    model = model.to(device) if dtype == torch.float32 else model.to(device=device, dtype=dtype)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2, help="latent frames")
    parser.add_argument("--height", type=int, default=30, help="latent height")
    parser.add_argument("--width", type=int, default=40, help="latent width")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--people", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per case (fastest reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    model = build(args, device, dtype)
    cfg = model.config
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, args.frames, cfg.in_channels, args.height, args.width, generator=generator)
    text = torch.randn(1, TEXT_TOKENS, cfg.text_embed_dim, generator=generator)
    step_inputs = {
        "hidden_states": latents.to(device, dtype),
        "encoder_hidden_states": text.to(device, dtype),
        "timestep": torch.tensor([500], device=device),
    }
    video_tokens = args.frames * (args.height // cfg.patch_size) * (args.width // cfg.patch_size)
    print(
        f"IngredientsTransformer3DModel step, {device.type} {str(dtype).removeprefix('torch.')}, "
        f"{torch.get_num_threads()} threads, {'wall' if device.type == 'cuda' else 'CPU'} time: "
        f"width {cfg.num_attention_heads * cfg.attention_head_dim}, "
        f"{cfg.num_layers} layers ({model.num_face_blocks} routed), "
        f"latent {args.frames}x{args.height}x{args.width} "
        f"({video_tokens} video + {TEXT_TOKENS} text tokens), "
        "released face-module sizes, batch 1, soft routing"
    )
    header = (
        f"{'N':>2} | {'once ms':>8} | {'raw ms':>8} | {'naive ms':>8} | {'once/raw':>8} | "
        f"{'once/naive':>10} | {'once MiB':>8} | {'raw MiB':>8} | {'naive MiB':>9} | {'encode ms':>9}"
    )
    print(header)
    print("-" * len(header))
    fast_injection = model._face_injection
    with torch.no_grad():
        for count in args.people:
            id_cond = [
                torch.randn(1, cfg.LFE_id_dim, generator=generator).to(device, dtype) for _ in range(count)
            ]
            id_vit = [
                [
                    torch.randn(1, 577, cfg.LFE_vit_dim, generator=generator).to(device, dtype)
                    for _ in range(5)
                ]
                for _ in range(count)
            ]
            identity = model.encode_identities(id_cond, id_vit)

            def once(identity=identity):
                return model(**step_inputs, identity=identity)

            def raw(id_cond=id_cond, id_vit=id_vit):
                return model(**step_inputs, id_cond=id_cond, id_vit_hidden=id_vit)

            def encode(id_cond=id_cond, id_vit=id_vit):
                return model.encode_identities(id_cond, id_vit)

            results = {"once": measure(once, args.steps, device), "raw": measure(raw, args.steps, device)}
            model._face_injection = types.MethodType(naive_face_injection, model)
            try:
                results["naive"] = measure(raw, args.steps, device)
            finally:
                model._face_injection = fast_injection
            encode_ms, _ = measure(encode, args.steps, device)
            (t_once, m_once), (t_raw, m_raw), (t_naive, m_naive) = (
                results["once"],
                results["raw"],
                results["naive"],
            )
            print(
                f"{count:>2} | {t_once:8.0f} | {t_raw:8.0f} | {t_naive:8.0f} | {t_once / t_raw:8.2f} | "
                f"{t_once / t_naive:10.2f} | {m_once:8.0f} | {m_raw:8.0f} | {m_naive:9.0f} | {encode_ms:9.0f}"
            )


if __name__ == "__main__":
    main()
