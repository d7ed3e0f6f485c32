"""One full-size clip on one GPU: s/step, s/clip, VAE decode time and peak memory, across memory modes, step
caches, attention backends, half precisions and regional compilation.

Set-up: the released transformer config (42 blocks, width 3072), a T5-XXL-sized text encoder and the
CogVideoX-5B VAE (``ingredients_model.components``), random weights created directly on the GPU in bf16 (their
own initialisation run on the device: nothing is downloaded or unpickled), an offline tokenizer. Workload:
one 49x480x720 clip, 2 people, classifier-free guidance (batch 2), through ``IngredientsPipeline``.

Per variant: k steps are timed after ``--warmup`` steps (CUDA-synchronised at each step's end):
  s/step   median step time;
  s/clip   time before the loop (prompt encode, image encode, identities) + 50 x s/step + VAE decode;
  decode   VAE decode of the clip's latents (the baseline's for variants that do not decode themselves);
  peak     torch.cuda.max_memory_allocated over the variant's call (tensors; not on CPU).
Variants, in this order (each is timed; when the rest of ``--budget`` cannot fit the next one, it is skipped
with a note): baseline (bf16, everything on the GPU, PyTorch SDPA); step caches (first-block, MagCache,
TaylorSeer, TaylorSeer lite: the cost of a computed and of a skipped step; skip *rates* mean nothing on random
weights, so none is reported); attention backends (diffusers' dispatcher: PyTorch's cuDNN / flash /
efficient kernels, and flash-attn, FlashAttention-3 or SageAttention where installed); fp16 instead of bf16;
memory modes (model CPU offload, sequential CPU offload, group offload; VAE tiled, decode included); regional
``torch.compile`` of the blocks. Prints one table and, with ``--out FILE``, writes JSON.

    python benchmarks/gpu_clip.py [--budget 450] [--steps 3] [--warmup 1] [--only GROUP,...] [--out FILE]
    python benchmarks/gpu_clip.py --tiny          # the same code on CPU at the tiny model's size (CI)

Device check (what a session lent an H100/H200 should run; the GPU image has PyTorch and transformers but not
diffusers, and no network). Here, once, in the repository root:

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps -d .whl diffusers==0.42.1 importlib_metadata==8.7.0

then one ``run`` with ``carry=[".whl"]`` and ``timeout_s=420`` (a 300 s budget plus start-up leaves time for
a second run, e.g. ``--only compile``, within 15 minutes of device time):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 \
      && python3 benchmarks/gpu_clip.py --budget 300 --out $OUT/gpu_clip.json 2>&1 | tee $OUT/gpu_clip.log
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from ingredients_model import released
from ingredients_model.components import RELEASED_CLIP, ClipSize, build_models
from ingredients_model.flops import H100_BF16_DENSE_TFLOPS, clip_flops
from ingredients_model.tiny import SCHEDULER_CONFIG, TINY_SIZE, write_tiny_tokenizer

GROUPS = ("baseline", "cache", "attention", "precision", "memory", "compile")
CLIP_STEPS = released.STEPS
PEOPLE = released.TRAINED_PEOPLE
PROMPT = "a woman and a man laughing at a cafe table, morning light"
VIT_TOKENS = {"released": 577, "tiny": 5}  # EVA-CLIP ViT-L/14 at 336 px: 24 x 24 patches + class token
GOAL_SECONDS = 45.0
STAND_IN_MAG_RATIOS = [0.99] * CLIP_STEPS  # MagCache needs ratios calibrated on real weights; none exist here
CPU_ATTENTION = ("_native_math",)
CUDA_ATTENTION = ("_native_cudnn", "_native_flash", "_native_efficient")
OPTIONAL_ATTENTION = {"flash": "flash_attn", "_flash_3": "flash_attn_interface", "sage": "sageattention"}


@dataclass
class Result:
    group: str
    variant: str
    status: str = "ok"  # ok | skipped | failed | oom
    s_per_step: float | None = None
    s_per_clip: float | None = None
    decode_s: float | None = None
    peak_gb: float | None = None
    paper_gb: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class Run:
    """One timed pipeline call: step durations, which steps computed the blocks, time before the loop."""

    step_s: list[float]
    computed: list[bool]
    pre_loop_s: float
    peak_gb: float | None
    latents: torch.Tensor


class Budget:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.size = "tiny" if args.tiny else "released"
        self.device = torch.device("cpu" if args.tiny else args.device)
        self.cuda = self.device.type == "cuda"
        self.dtype = torch.float32 if args.tiny else torch.bfloat16  # bf16 kernels are slow on CPUs
        self.clip = (
            ClipSize(TINY_SIZE["frames"], TINY_SIZE["height"], TINY_SIZE["width"])
            if args.tiny
            else RELEASED_CLIP
        )
        self.baseline_name = f"{str(self.dtype).removeprefix('torch.')}, memory none, SDPA"
        self.budget = Budget(args.budget)
        self.results: list[Result] = []
        self.baseline: Result | None = None
        self._tokenizer_dir = tempfile.TemporaryDirectory(prefix="gpu_clip_tokenizer.")
        self.vocab_size = write_tiny_tokenizer(Path(self._tokenizer_dir.name))
        self.pipe = None

    # ------------------------------------------------------------------ set-up

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def build_pipeline(self):
        """The pipeline with random weights created on the benchmark device (see the module docstring)."""
        from diffusers import CogVideoXDPMScheduler
        from transformers import AutoTokenizer

        from ingredients_model.pipeline import IngredientsPipeline

        torch.manual_seed(0)
        models = build_models(self.size, device=self.device, dtype=self.dtype, vocab_size=self.vocab_size)
        pipe = IngredientsPipeline(
            tokenizer=AutoTokenizer.from_pretrained(self._tokenizer_dir.name),
            text_encoder=models["text_encoder"],
            vae=models["vae"],
            transformer=models["transformer"],
            scheduler=CogVideoXDPMScheduler(**SCHEDULER_CONFIG),
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def people(self) -> tuple[list[torch.Tensor], list[list[torch.Tensor]], PIL.Image.Image]:
        cfg = self.pipe.transformer.config
        g = torch.Generator().manual_seed(1)
        id_cond = [torch.randn(1, cfg.LFE_id_dim, generator=g) for _ in range(PEOPLE)]
        id_vit = [
            [
                torch.randn(1, VIT_TOKENS[self.size], cfg.LFE_vit_dim, generator=g)
                for _ in range(cfg.LFE_num_scale)
            ]
            for _ in range(PEOPLE)
        ]
        pixels = np.random.default_rng(2).integers(
            0, 256, (self.clip.height, self.clip.width, 3), dtype=np.uint8
        )
        return id_cond, id_vit, PIL.Image.fromarray(pixels)

    # ------------------------------------------------------------------ measuring

    def call(self, steps: int, **kwargs) -> Run:
        """One pipeline call of ``steps`` steps (latents out), timed at every step's end."""
        id_cond, id_vit, image = self.people()
        stamps: list[float] = []
        computed: list[bool] = []
        ran = []
        last_linear = self.pipe.transformer.transformer_blocks[-1].ff.net[-1]
        handle = last_linear.register_forward_hook(lambda *_: ran.append(1))

        def on_step_end(pipe, i, t, tensors):
            self.sync()
            stamps.append(time.perf_counter())
            computed.append(bool(ran))
            ran.clear()
            return {}

        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        self.sync()
        start = time.perf_counter()
        try:
            latents = self.pipe(
                PROMPT,
                id_cond=id_cond,
                id_vit_hidden=id_vit,
                image=image,
                num_inference_steps=steps,
                generator=torch.Generator(self.device).manual_seed(0),
                output_type="latent",
                callback_on_step_end=on_step_end,
                **kwargs,
            ).frames
        finally:
            handle.remove()
        step_s = [b - a for a, b in itertools.pairwise(stamps)]  # steps 1..n-1
        first = stamps[0] - start
        pre_loop = max(first - (statistics.median(step_s) if step_s else 0.0), 0.0)
        peak = torch.cuda.max_memory_allocated(self.device) / 1e9 if self.cuda else None
        return Run(step_s=step_s, computed=computed[1:], pre_loop_s=pre_loop, peak_gb=peak, latents=latents)

    def decode(self, latents: torch.Tensor) -> float:
        self.sync()
        start = time.perf_counter()
        with torch.no_grad():
            self.pipe.decode_latents(latents)
        self.sync()
        return time.perf_counter() - start

    def measured_steps(self, run: Run) -> list[float]:
        return run.step_s[max(self.args.warmup - 1, 0) :]

    def timed(self, group: str, variant: str, decode: bool = False, note: str = "", **kwargs) -> Result:
        """Steady-state s/step (and s/clip) of a call with ``kwargs``; decode included when asked."""
        run = self.call(self.args.warmup + self.args.steps, **kwargs)
        s_step = statistics.median(self.measured_steps(run))
        decode_s = self.decode(run.latents) if decode else (self.baseline.decode_s if self.baseline else None)
        peak = run.peak_gb
        if decode and self.cuda:
            peak = max(peak, torch.cuda.max_memory_allocated(self.device) / 1e9)
        s_clip = run.pre_loop_s + CLIP_STEPS * s_step + (decode_s or 0.0)
        return Result(
            group,
            variant,
            s_per_step=s_step,
            s_per_clip=s_clip,
            decode_s=decode_s,
            peak_gb=peak,
            note=note,
            extra={"pre_loop_s": run.pre_loop_s, "step_s": run.step_s},
        )

    def attempt(self, group: str, variant: str, estimate_s: float, fn: Callable[[], Result]) -> None:
        """Run one variant if the budget allows, recording failures instead of stopping."""
        if self.args.only and group not in self.args.only and group != "baseline":
            return
        left = self.budget.left()
        if left < estimate_s:
            self.results.append(
                Result(
                    group,
                    variant,
                    status="skipped",
                    note=f"budget: {left:.0f} s left, needs ~{estimate_s:.0f} s",
                )
            )
            print(f"[skip] {group}/{variant}: budget", flush=True)
            return
        print(f"[run]  {group}/{variant} (~{estimate_s:.0f} s, {left:.0f} s left)", flush=True)
        started = time.monotonic()
        try:
            result = fn()
        except torch.OutOfMemoryError as error:
            result = Result(group, variant, status="oom", note=str(error).splitlines()[0][:160])
        except Exception as error:  # a variant's failure is a result, not the end of the benchmark
            traceback.print_exc()
            result = Result(group, variant, status="failed", note=f"{type(error).__name__}: {error}"[:200])
        finally:
            gc.collect()
            if self.cuda:
                torch.cuda.empty_cache()
        result.extra["wall_s"] = time.monotonic() - started
        self.results.append(result)
        print(f"       {result.status}, {result.extra['wall_s']:.1f} s", flush=True)

    # ------------------------------------------------------------------ variants

    def step_estimate(self, steps: int | None = None, factor: float = 1.0) -> float:
        s = self.baseline.s_per_step if self.baseline and self.baseline.s_per_step else 2.0
        pre = self.baseline.extra.get("pre_loop_s", 1.0) if self.baseline else 1.0
        return pre + factor * s * (steps or self.args.warmup + self.args.steps + 1)

    def run_baseline(self) -> Result:
        result = self.timed("baseline", self.baseline_name, decode=True)
        result.paper_gb = self.paper_gb("none")
        self.baseline = result
        return result

    def run_cache(self, kind: str, computed_spec: dict, skipping_spec: dict) -> Result:
        every = self.timed("cache", kind, cache=computed_spec)
        run = self.call(self.args.warmup + self.args.steps + 2, cache=skipping_spec)
        skipped = [s for s, c in zip(run.step_s, run.computed, strict=True) if not c]
        computed = [s for s, c in zip(run.step_s, run.computed, strict=True) if c]
        if not skipped:
            raise RuntimeError(f"{kind}: the skipping settings skipped no step")
        s_skip = statistics.median(skipped)
        every.note = (
            f"skipped step {s_skip:.3f} s = {s_skip / every.s_per_step:.0%} of a computed one; "
            "s/clip shown with every step computed"
        )
        every.peak_gb = max(filter(None, [every.peak_gb, run.peak_gb]), default=None)
        every.extra.update(
            {
                "computed_step_s": every.s_per_step,
                "skipped_step_s": s_skip,
                "skipping_run_computed_step_s": computed,
            }
        )
        return every

    def run_attention(self, backend: str) -> Result:
        from diffusers.models.attention_dispatch import _AttentionBackendRegistry

        transformer = self.pipe.transformer
        active, _ = _AttentionBackendRegistry.get_active_backend()
        transformer.set_attention_backend(backend)
        try:
            return self.timed("attention", backend)
        finally:
            transformer.reset_attention_backend()
            _AttentionBackendRegistry.set_active_backend(active)

    def run_fp16(self) -> Result:
        self.pipe.to(dtype=torch.float16)
        try:
            return self.timed(
                "precision", "fp16 (memory none, SDPA)", note="random weights may overflow in fp16"
            )
        finally:
            self.pipe.to(dtype=self.dtype)

    def run_memory(self, mode: str) -> Result:
        from ingredients_model.checkpoint import configure_memory

        if not self.cuda and mode in ("model_offload", "sequential_offload"):
            return Result("memory", mode, status="skipped", note="needs a GPU (offloads to the CPU)")
        self.pipe.to("cpu")
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
        if mode == "sequential_offload":
            self.pipe.vae.enable_tiling()
            self.pipe.vae.enable_slicing()
            self.pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            configure_memory(self.pipe, self.device, mode)
        result = self.timed("memory", mode, decode=True, note="VAE tiled")
        result.paper_gb = self.paper_gb(mode)
        if mode != "group_offload":  # group offloading is the last memory mode: its hooks stay
            self.pipe.remove_all_hooks()
            self.pipe.vae.disable_tiling()
            self.pipe.vae.disable_slicing()
        return result

    def run_compile(self) -> Result:
        """Regional compilation (``compile_repeated_blocks``) of a fresh pipeline placed on the device.

        The 21 routed blocks (identity injection included) share their compiled graphs instead of needing one
        each: the injection a block gets holds its modules and features, not its index."""
        self.pipe = None
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
        self.pipe = self.build_pipeline()
        self.pipe.transformer.compile_repeated_blocks(fullgraph=False, backend=self.args.compile_backend)
        started = time.perf_counter()
        self.call(2)
        compile_s = time.perf_counter() - started
        result = self.timed("compile", f"compile_repeated_blocks ({self.args.compile_backend})")
        result.note = f"first call (2 steps, compiling) {compile_s:.0f} s"
        result.extra["compile_call_s"] = compile_s
        return result

    def paper_gb(self, mode: str) -> float | None:
        if self.size != "released":
            return None
        from ingredients_model.memory import estimate_memory

        return next(e.peak_bytes for e in estimate_memory(self.clip) if e.mode == mode) / 1e9

    # ------------------------------------------------------------------ the run

    def available_attention(self) -> list[str]:
        import importlib.util

        names = list(CUDA_ATTENTION) if self.cuda else list(CPU_ATTENTION)
        if self.cuda:
            names += [name for name, module in OPTIONAL_ATTENTION.items() if importlib.util.find_spec(module)]
        return names

    def run(self) -> None:
        started = time.perf_counter()
        self.pipe = self.build_pipeline()
        self.setup_s = time.perf_counter() - started
        print(f"built the {self.size} pipeline on {self.device} in {self.setup_s:.1f} s", flush=True)
        self.call(1)  # warm-up: kernels, allocator, lazy initialisation
        self.attempt("baseline", self.baseline_name, 0, self.run_baseline)
        if self.baseline is None:
            return
        n = self.args.warmup + self.args.steps
        caches = {
            "first_block": (
                {"kind": "first_block", "threshold": 0.0},
                {"kind": "first_block", "threshold": 1e9},
            ),
            "mag": (
                {"kind": "mag", "threshold": 0.0, "mag_ratios": STAND_IN_MAG_RATIOS},
                {
                    "kind": "mag",
                    "threshold": 1e9,
                    "retention_ratio": 0.0,
                    "max_skip_steps": 10**6,
                    "mag_ratios": STAND_IN_MAG_RATIOS,
                },
            ),
            "taylorseer": (
                {"kind": "taylorseer", "cache_interval": 1},
                {"kind": "taylorseer", "cache_interval": 10**6, "disable_cache_before_step": 1},
            ),
            "taylorseer_lite": (
                {"kind": "taylorseer", "cache_interval": 1, "use_lite_mode": True},
                {
                    "kind": "taylorseer",
                    "cache_interval": 10**6,
                    "disable_cache_before_step": 1,
                    "use_lite_mode": True,
                },
            ),
        }
        for kind, (every, skipping) in caches.items():
            self.attempt(
                "cache",
                kind,
                self.step_estimate(2 * n + 2),
                lambda k=kind, e=every, s=skipping: self.run_cache(k, e, s),
            )
        for backend in self.available_attention():
            self.attempt("attention", backend, self.step_estimate(), lambda b=backend: self.run_attention(b))
        self.attempt(
            "precision", "fp16 (memory none, SDPA)", self.step_estimate(factor=1.2) + 5, self.run_fp16
        )
        decode = self.baseline.decode_s or 1.0
        for mode, factor in (("model_offload", 1.2), ("sequential_offload", 3.0), ("group_offload", 2.5)):
            estimate = self.step_estimate(factor=factor) + 4 * decode + 20
            self.attempt("memory", mode, estimate, lambda m=mode: self.run_memory(m))
        self.attempt(
            "compile",
            "compile_repeated_blocks",
            self.args.compile_estimate + self.step_estimate(),
            self.run_compile,
        )

    # ------------------------------------------------------------------ report

    def report(self) -> dict:
        flops = clip_flops(self.clip, people=PEOPLE, guidance=True, steps=CLIP_STEPS, size=self.size)
        device_name = (
            torch.cuda.get_device_name(self.device)
            if self.cuda
            else f"CPU ({torch.get_num_threads()} threads)"
        )
        header = (
            f"{'group':<10} {'variant':<34} {'status':<7} {'s/step':>8} {'s/clip':>8} {'decode s':>8} "
            f"{'peak GB':>8} {'paper GB':>8}  note"
        )
        print(
            f"\n{device_name}, torch {torch.__version__}, {self.size} models, "
            f"{self.clip.frames}x{self.clip.height}x{self.clip.width}, {PEOPLE} people, CFG, "
            f"{self.args.warmup} warm-up + {self.args.steps} timed steps per variant"
        )
        print(header)
        print("-" * len(header))

        def fmt(value, digits=3):
            return f"{value:8.{digits}f}" if isinstance(value, float) else f"{'-':>8}"

        for r in self.results:
            times = f"{fmt(r.s_per_step)} {fmt(r.s_per_clip, 1)} {fmt(r.decode_s, 2)}"
            memory = f"{fmt(r.peak_gb, 1)} {fmt(r.paper_gb, 1)}"
            print(f"{r.group:<10} {r.variant[:34]:<34} {r.status:<7} {times} {memory}  {r.note}")
        print(
            f"\nFLOPs per clip (counted on the meta device): {flops.total:.3e} "
            f"({CLIP_STEPS} steps x {flops.step:.3e}, VAE decode {flops.vae_decode:.2e}); dense limit "
            f"{flops.seconds():.1f} s at {H100_BF16_DENSE_TFLOPS:g} TFLOP/s. "
            f"Goal: one clip in <= {GOAL_SECONDS:g} s on one H100."
        )
        if self.baseline and self.baseline.s_per_step:
            achieved = flops.step / self.baseline.s_per_step / 1e12
            print(f"Baseline: {achieved:.3g} TFLOP/s achieved in the denoising step.")
        print(
            "Step caches: random weights make every skip decision meaningless, so no skip rate is reported; "
            "'skipped step' is the cost of a step the cache skips (forced by extreme settings). MagCache ran "
            "with stand-in ratios."
        )
        return {
            "device": device_name,
            "torch": torch.__version__,
            "size": self.size,
            "clip": asdict(self.clip),
            "people": PEOPLE,
            "guidance": True,
            "warmup_steps": self.args.warmup,
            "timed_steps": self.args.steps,
            "budget_s": self.args.budget,
            "setup_s": getattr(self, "setup_s", None),
            "flops": {**asdict(flops), "total": flops.total, "dense_limit_s": flops.seconds()},
            "goal_s": GOAL_SECONDS,
            "results": [asdict(r) for r in self.results],
        }


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny models on the CPU (tests the script)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for everything (default 450)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    parser.add_argument(
        "--only",
        type=lambda s: set(s.split(",")),
        default=None,
        help=f"groups to run (baseline always runs): {','.join(GROUPS)}",
    )
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument(
        "--compile-estimate", type=float, default=200.0, help="seconds a regional compile may take"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads with --tiny")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.only and not args.only <= set(GROUPS):
        parser.error(f"--only takes groups from {', '.join(GROUPS)}")
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1")
    if args.tiny:
        torch.set_num_threads(args.threads)
    if not args.tiny and not torch.cuda.is_available():
        print("gpu_clip: no CUDA GPU here; run with --tiny to test the script on the CPU.", file=sys.stderr)
        return 2
    with contextlib.suppress(ImportError):
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()
    bench = Bench(args)
    try:
        bench.run()
    finally:
        data = bench.report()
        if args.out:
            write_json(args.out, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
