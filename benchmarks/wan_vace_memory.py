"""Parameter counts and estimated GPU memory per memory mode of the released Wan2.1-VACE checkpoints, and the
CPU time of one shot with the tiny random folder.

The released architectures are built on the meta device (no weights, no download) from the configs that
diffusers' ``scripts/convert_wan_to_diffusers.py`` uses for ``Wan-VACE-1.3B`` and ``Wan-VACE-14B``; the
UMT5-XXL encoder and the Wan VAE from their published sizes. Memory figures are
:func:`storyreel.models.wan_vace.thresholds`: weights in the engine's dtypes plus an activation estimate;
they are estimates, not measurements.

    python benchmarks/wan_vace_memory.py [--tiny-steps 2 --threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

RELEASED = {
    "wan-vace-1.3b": {
        "num_attention_heads": 12,
        "ffn_dim": 8960,
        "num_layers": 30,
        "vace_layers": list(range(0, 30, 2)),
    },
    "wan-vace-14b": {
        "num_attention_heads": 40,
        "ffn_dim": 13824,
        "num_layers": 40,
        "vace_layers": list(range(0, 40, 5)),
    },
}
SHARED = {
    "patch_size": (1, 2, 2),
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "vace_in_channels": 96,
}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def released_figures() -> None:
    from diffusers import AutoencoderKLWan, WanVACETransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from storyreel.models.wan_vace import ACTIVATIONS_GIB, WAN_480P, thresholds

    with torch.device("meta"):
        text = count(
            UMT5EncoderModel(
                UMT5Config(
                    vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                    feed_forward_proj="gated-gelu",
                )
            )
        )  # fmt: skip
        vae = count(AutoencoderKLWan())
        transformers = {
            name: count(WanVACETransformer3DModel(**SHARED, **cfg)) for name, cfg in RELEASED.items()
        }
    per_frame = (WAN_480P.height // 16) * (WAN_480P.width // 16)
    tokens = ((WAN_480P.max_frames - 1) // 4 + 1) * per_frame
    print(f"UMT5-XXL encoder {text / 1e9:.2f}B parameters, Wan VAE {vae / 1e6:.0f}M")
    print(f"480p, {WAN_480P.max_frames} frames: {tokens} video tokens + {per_frame} per reference image; "
          f"activations estimated at {ACTIVATIONS_GIB:.0f} GiB")  # fmt: skip
    print(f"{'variant':<15}{'transformer':>14}{'bf16 GiB':>10}{'none GiB':>10}{'offload GiB':>13}")
    for name, params in transformers.items():
        none, offload = thresholds(params, text, vae)
        print(f"{name:<15}{params / 1e9:>13.2f}B{2 * params / 2**30:>10.1f}{none:>10.1f}{offload:>13.1f}")


def tiny_shot(steps: int) -> None:
    from PIL import Image

    from storyreel.models.wan_vace import load_pipeline
    from storyreel.models.wan_vace_tiny import TINY_NATIVE, write_tiny_folder

    with tempfile.TemporaryDirectory() as tmp:
        pipe = load_pipeline(write_tiny_folder(Path(tmp) / "tiny"), memory="none")
        face = Image.new("RGB", (48, 60), (200, 160, 130))
        for label in ("first call", "second call"):
            start = time.perf_counter()
            pipe(
                prompt="two friends laugh at a cafe table",
                reference_images=[face, face],
                height=TINY_NATIVE.height,
                width=TINY_NATIVE.width,
                num_frames=TINY_NATIVE.max_frames,
                num_inference_steps=steps,
                generator=torch.Generator().manual_seed(0),
                output_type="np",
            )
            size = f"{TINY_NATIVE.width}x{TINY_NATIVE.height}x{TINY_NATIVE.max_frames}"
            seconds = time.perf_counter() - start
            print(f"tiny folder, {size}, 2 references, {steps} steps, {label}: {seconds:.2f} s on the CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    released_figures()
    tiny_shot(args.tiny_steps)


if __name__ == "__main__":
    main()
