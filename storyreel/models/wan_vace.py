"""Wan2.1-VACE model folders in diffusers layout: variants, completeness, download, loading, memory modes.

Layout (``Wan-AI/Wan2.1-VACE-1.3B-diffusers`` and ``Wan-AI/Wan2.1-VACE-14B-diffusers``)::

    model_index.json   _class_name WanVACEPipeline
    transformer/       WanVACETransformer3DModel: config + single or sharded safetensors
    vae/               AutoencoderKLWan
    text_encoder/      UMT5EncoderModel (UMT5-XXL encoder)
    tokenizer/         the umt5-xxl T5 tokenizer
    scheduler/         scheduler_config.json
    storyreel.json     ours, optional: which variant, repository and revision, and the native format

The pipeline is diffusers' own ``WanVACEPipeline``, loaded from the folder with the classes its
``model_index.json`` names; there is no model code of ours. ``storyreel.json`` is written by
``storyreel models download`` and ``storyreel models tiny``; a folder without it (downloaded another way)
gets Wan 2.1's 480p format: 832x480 or 480x832, 16 fps, 81 frames.
"""

from __future__ import annotations

import gc
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from storyreel.errors import StoryreelError
from storyreel.fsutil import atomic_write_json

if TYPE_CHECKING:
    import torch
    from diffusers import WanVACEPipeline

__all__ = [
    "FOLDER_RECORD",
    "MAX_REFERENCES",
    "PIPELINE_CLASS",
    "VARIANTS",
    "WAN_480P",
    "FolderRecord",
    "NativeFormat",
    "Variant",
    "download",
    "free_text_encoder",
    "load_pipeline",
    "memory_thresholds",
    "missing_files",
    "model_revision",
    "native_format",
    "read_record",
    "require_complete",
    "thresholds",
    "write_record",
]

PIPELINE_CLASS = "WanVACEPipeline"
FOLDER_RECORD = "storyreel.json"
RECORD_FORMAT = 1

ACTIVATIONS_GIB = 6.0
"""Estimated GPU memory beyond the weights at 480p and 81 frames (latents, the VACE hints, attention, tiled
VAE decoding); an estimate from tensor sizes, not measured (no GPU here)."""

DOWNLOAD_HINT = "storyreel models download wan-vace-1.3b DIR"


@dataclass(frozen=True)
class NativeFormat:
    """What a checkpoint was trained for: landscape size (its portrait twin is the transpose), fps, frames."""

    width: int
    height: int
    fps: int
    max_frames: int


MAX_REFERENCES = 3
"""Reference images VACE's own "reference anything" preprocessing accepts ("no more than three images")."""

WAN_480P = NativeFormat(width=832, height=480, fps=16, max_frames=81)
"""Wan 2.1's 480p bucket (832*480 and 480*832), 16 fps, 81 frames (its SIZE_CONFIGS, sample_fps and
frame_num)."""


@dataclass(frozen=True)
class Variant:
    """A released checkpoint: the name ``storyreel models download`` takes, its repository and format."""

    name: str
    repo_id: str
    native: NativeFormat


VARIANTS = {
    "wan-vace-1.3b": Variant("wan-vace-1.3b", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", WAN_480P),
    "wan-vace-14b": Variant("wan-vace-14b", "Wan-AI/Wan2.1-VACE-14B-diffusers", WAN_480P),
}
"""The two released Wan2.1-VACE checkpoints in diffusers layout (both do 480p; the 14B also 720p, unused
here)."""


@dataclass(frozen=True)
class FolderRecord:
    """``storyreel.json``: what a model folder is."""

    variant: str
    repo_id: str | None
    revision: str | None
    native: NativeFormat


def read_record(model_dir: Path) -> FolderRecord | None:
    """The folder's ``storyreel.json``, or None when absent; a damaged one is an error naming the fix."""
    path = Path(model_dir) / FOLDER_RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return FolderRecord(
            variant=str(data["variant"]),
            repo_id=data.get("repo_id"),
            revision=data.get("revision"),
            native=NativeFormat(**{k: int(v) for k, v in data["native"].items()}),
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StoryreelError(
            f"{path} is damaged ({type(err).__name__}: {err})",
            hint=f"delete it (the folder then gets Wan 2.1's 480p format) or run `{DOWNLOAD_HINT}` again",
        ) from err


def write_record(model_dir: Path, record: FolderRecord) -> None:
    """Write ``storyreel.json`` atomically."""
    data = asdict(record)
    data["format"] = RECORD_FORMAT
    atomic_write_json(Path(model_dir) / FOLDER_RECORD, data)


def native_format(model_dir: Path) -> NativeFormat:
    """The folder's native format: from ``storyreel.json``, else Wan 2.1's 480p format."""
    record = read_record(model_dir)
    return record.native if record is not None else WAN_480P


# ------------------------------------------------------------------------------------- completeness


def _pipeline_class(model_dir: Path) -> str | None:
    try:
        return json.loads((Path(model_dir) / "model_index.json").read_text(encoding="utf-8")).get(
            "_class_name"
        )
    except (OSError, ValueError, AttributeError):
        return None


def missing_files(model_dir: Path) -> list[str]:
    """What a complete Wan VACE folder needs but this one lacks (paths relative to ``model_dir``); a
    ``model_index.json`` of another pipeline is listed too, since no file here can fix that."""
    from ingredients_model.checkpoint import missing_diffusers_files

    missing = missing_diffusers_files(model_dir)
    found = _pipeline_class(model_dir)
    if "model_index.json" not in missing and found != PIPELINE_CLASS:
        missing.insert(0, f"model_index.json of a {PIPELINE_CLASS} (this one is {found or 'unreadable'})")
    return missing


def require_complete(model_dir: Path) -> None:
    """Raise StoryreelError naming every missing file of the folder and how to get them."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise StoryreelError(
            f"Wan VACE model folder {model_dir} does not exist",
            hint=f"download it with `{DOWNLOAD_HINT}` (needs network access to huggingface.co), or write "
            "a tiny test model with `storyreel models tiny DIR --engine wan-vace`",
        )
    missing = missing_files(model_dir)
    if missing:
        listing = "\n".join(f"  - {name}" for name in missing)
        raise StoryreelError(
            f"Wan VACE model folder {model_dir} is incomplete; {len(missing)} problem(s):\n{listing}",
            hint=f"run `{DOWNLOAD_HINT.replace('DIR', str(model_dir))}` (or wan-vace-14b; it resumes partial "
            "downloads)",
        )


def model_revision(model_dir: Path) -> str:
    """Fingerprint of the folder's weights and configs (16 hex digits; see ingredients_model.checkpoint)."""
    from ingredients_model.checkpoint import model_revision as fingerprint

    return fingerprint(model_dir)


# ------------------------------------------------------------------------------------------ download


def download(variant: str, local_dir: Path, revision: str | None = None, repo_id: str | None = None) -> Path:
    """Download (or resume) a released variant into ``local_dir`` with huggingface_hub, check it is
    complete and record what it is in ``storyreel.json``. ``repo_id`` overrides the variant's repository."""
    from ingredients_model.checkpoint import download_snapshot
    from ingredients_model.errors import HintedError

    if variant not in VARIANTS:
        raise StoryreelError(
            f"unknown Wan VACE variant {variant!r}", hint="use one of: " + ", ".join(VARIANTS)
        )
    chosen = VARIANTS[variant]
    repo = repo_id or chosen.repo_id
    try:
        path = download_snapshot(local_dir, repo, revision)
    except HintedError as err:
        raise StoryreelError.from_error(err) from err
    require_complete(path)
    write_record(path, FolderRecord(chosen.name, repo, revision, chosen.native))
    return path


# ------------------------------------------------------------------------------------------- loading


def _parameters(folder: Path) -> int:
    """Parameter count of a component from its safetensors headers (no weights are read)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118  (safe_open has keys(), no __iter__)
                count = 1
                for dim in handle.get_slice(name).get_shape():
                    count *= dim
                total += count
    return total


def thresholds(transformer: int, text_encoder: int, vae: int) -> tuple[float, float]:
    """Free GPU memory (GiB) that ``none`` and ``model_offload`` need for components of these parameter
    counts: weights in the engine's dtypes (transformer and text encoder bf16, VAE float32) plus
    :data:`ACTIVATIONS_GIB`. ``none`` holds everything at once; ``model_offload`` one model at a time (the
    larger of the text encoder and the transformer with its activations)."""
    gib = 2**30
    weights_transformer, weights_text, weights_vae = (
        2 * transformer / gib,
        2 * text_encoder / gib,
        4 * vae / gib,
    )
    none = weights_transformer + weights_text + weights_vae + ACTIVATIONS_GIB
    return none, max(weights_text, weights_transformer + ACTIVATIONS_GIB)


def memory_thresholds(model_dir: Path) -> tuple[float, float]:
    """:func:`thresholds` for this folder's parameter counts, read from its safetensors headers.

    Released 1.3B (2.2B transformer parameters with its VACE blocks, 5.7B UMT5): about 21 and 11 GiB; 14B
    (17.3B): about 49 and 38 GiB (``python benchmarks/wan_vace_memory.py``). Estimates, not measured.
    """
    model_dir = Path(model_dir)
    return thresholds(*(_parameters(model_dir / name) for name in ("transformer", "text_encoder", "vae")))


def load_pipeline(
    model_dir: Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    memory: str = "auto",
) -> WanVACEPipeline:
    """Load diffusers' WanVACEPipeline from a model folder (released or tiny) onto ``device``.

    ``dtype`` (default: bfloat16 on CUDA, float32 elsewhere) applies to the transformer and text encoder; the
    VAE stays float32, as diffusers' Wan examples load it. The scheduler is the folder's (diffusers'
    conversion writes UniPC with ``flow_shift`` 3.0, the value its Wan VACE example gives for 480p).
    memory: ``none`` (everything on ``device``), ``model_offload`` (one model on the GPU at a time),
    ``group_offload`` (one transformer block at a time; text encoder and VAE leaf by leaf), ``auto`` (by free
    GPU memory against :func:`memory_thresholds`; ``none`` on the CPU). Both offload modes also turn on VAE
    tiling and slicing.
    """
    import torch
    from diffusers import AutoencoderKLWan, WanVACEPipeline

    from ingredients_model.checkpoint import MEMORY_MODES

    model_dir = Path(model_dir)
    require_complete(model_dir)
    device = torch.device(device)
    if memory not in MEMORY_MODES:
        raise StoryreelError(f"unknown memory mode {memory!r}", hint="use one of: " + ", ".join(MEMORY_MODES))
    mode = _resolve_memory(memory, device, model_dir)
    if mode == "model_offload" and device.type != "cuda":
        raise StoryreelError(
            f"memory mode 'model_offload' moves whole models between the CPU and a GPU; {device} is no GPU",
            hint="use --memory none (or auto) on the CPU",
        )
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        vae = AutoencoderKLWan.from_pretrained(model_dir / "vae", torch_dtype=torch.float32)
        pipe = WanVACEPipeline.from_pretrained(model_dir, vae=vae, torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError, TypeError) as err:
        raise StoryreelError(
            f"cannot load the Wan VACE model in {model_dir}: {err}",
            hint=f"the folder looks complete but a file is damaged or from another model; run "
            f"`{DOWNLOAD_HINT.replace('DIR', str(model_dir))}` to repair it",
        ) from err
    pipe.set_progress_bar_config(disable=True)
    _configure_memory(pipe, device, mode)
    return pipe


def _resolve_memory(memory: str, device: torch.device, model_dir: Path) -> str:
    """``auto`` → ``none`` when the free GPU memory covers :func:`memory_thresholds`' first figure, else
    ``model_offload`` when it covers the second, else ``group_offload``; ``none`` on the CPU."""
    import torch

    if memory != "auto":
        return memory
    if device.type != "cuda":
        return "none"
    free = torch.cuda.mem_get_info(device)[0] / 2**30
    none_gib, offload_gib = memory_thresholds(model_dir)
    return "none" if free >= none_gib else "model_offload" if free >= offload_gib else "group_offload"


def _configure_memory(pipe: WanVACEPipeline, device: torch.device, mode: str) -> None:
    """Place ``pipe`` on ``device`` for a resolved memory mode (see :func:`load_pipeline`).

    Group offloading is block level for the transformer (its ``blocks`` and ``vace_blocks`` one at a time) and
    leaf level for the text encoder and the VAE, whose ``encode``/``decode`` are not ``forward`` calls.
    """
    from diffusers.hooks import apply_group_offloading

    if mode == "none":
        pipe.to(device)
        return
    pipe.vae.enable_tiling()
    pipe.vae.enable_slicing()
    if mode == "model_offload":
        pipe.enable_model_cpu_offload(device=device)
        return
    stream = device.type == "cuda"
    for module in (pipe.text_encoder, pipe.vae):
        apply_group_offloading(module, onload_device=device, offload_type="leaf_level", use_stream=stream)
    pipe.transformer.enable_group_offload(
        onload_device=device, offload_type="block_level", num_blocks_per_group=1, use_stream=stream
    )


def free_text_encoder(pipe: WanVACEPipeline) -> None:
    """Drop the UMT5 encoder (about 11 GB in bf16) once every prompt is encoded; later calls need
    ``prompt_embeds`` and ``negative_prompt_embeds``."""
    import torch

    pipe.register_modules(text_encoder=None)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
