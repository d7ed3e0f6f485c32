"""Model folders in the released Hugging Face layout: completeness check, fingerprint, download and loading.

Layout (``feizhengcong/Ingredients``)::

    model_index.json
    transformer/   config.json (``_class_name: ConsisIDTransformer3DModel``), bf16 safetensors shards + index
    transformer_ema/  optional, same layout: when present it is the transformer that is loaded, checked and
                   fingerprinted instead of ``transformer/``, as the released inference code (infer.py) does
    vae/           config.json, diffusion_pytorch_model.safetensors      (AutoencoderKLCogVideoX)
    text_encoder/  config.json, model*.safetensors (+ index)             (T5EncoderModel)
    tokenizer/     tokenizer_config.json, spiece.model or tokenizer.json (T5 tokenizer)
    scheduler/     scheduler_config.json                                 (CogVideoXDPMScheduler)
    face_encoder/  face models, see ``ingredients_model.faces.missing_face_encoder_files``

``load_pipeline`` loads every folder, released or tiny, through the same code.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ingredients_model.errors import IngredientsError, MissingWeightsError
from ingredients_model.memory_modes import MEMORY_MODES
from ingredients_model.released import REPO_ID
from ingredients_model.tiny import write_tiny_model_folder

if TYPE_CHECKING:
    from ingredients_model.pipeline import IngredientsPipeline

__all__ = [
    "DEFAULT_REPO_ID",
    "MEMORY_MODES",
    "configure_memory",
    "download_model",
    "download_snapshot",
    "load_pipeline",
    "missing_diffusers_files",
    "missing_files",
    "model_revision",
    "require_complete",
    "transformer_subfolder",
    "write_tiny_model_folder",
]

logger = logging.getLogger(__name__)

DEFAULT_REPO_ID = REPO_ID

# component folder -> (config file, single-file weights, sharded-weights index)
_WEIGHT_COMPONENTS = {
    "transformer": (
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.safetensors.index.json",
    ),
    "vae": (
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.safetensors.index.json",
    ),
    "text_encoder": ("config.json", "model.safetensors", "model.safetensors.index.json"),
}
EMA_TRANSFORMER = "transformer_ema"
_SAMPLE_BYTES = 1 << 20  # bytes hashed at the start, middle and end of large files by model_revision
_SMALL_FILE = 4 * _SAMPLE_BYTES


def transformer_subfolder(model_dir: Path) -> str:
    """The transformer folder a model folder's weights are loaded from: ``transformer_ema`` when the folder
    has one (the released inference code then loads it), else ``transformer``."""
    return EMA_TRANSFORMER if (Path(model_dir) / EMA_TRANSFORMER).is_dir() else "transformer"


def _component_folders(model_dir: Path) -> dict[str, str]:
    """Component -> the subfolder it is loaded from (the transformer may come from ``transformer_ema``)."""
    return {
        component: transformer_subfolder(model_dir) if component == "transformer" else component
        for component in _WEIGHT_COMPONENTS
    }


def _missing_weights(model_dir: Path, component: str, subfolder: str) -> list[str]:
    config, single, index = _WEIGHT_COMPONENTS[component]
    folder = model_dir / subfolder
    missing = [] if (folder / config).is_file() else [f"{subfolder}/{config}"]
    if (folder / index).is_file():
        try:
            shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError):
            return [*missing, f"{subfolder}/{index} (unreadable: download it again)"]
        missing += [f"{subfolder}/{shard}" for shard in shards if not (folder / shard).is_file()]
    elif not (folder / single).is_file():
        missing.append(f"{subfolder}/{single} (or the shards listed by {index})")
    return missing


def _missing_face_encoder_files(model_dir: Path) -> list[str]:
    """The face encoder's files, by the same dispatch as ``faces.load_face_encoder``: a ``config.json``
    means the tiny encoder (config + weights; an unreadable config is damaged, not missing), its absence
    the released files."""
    from ingredients_model.faces import TINY_WEIGHTS, missing_face_encoder_files

    folder = model_dir / "face_encoder"
    if (folder / "config.json").is_file():
        missing = [] if (folder / TINY_WEIGHTS).is_file() else [TINY_WEIGHTS]
    else:
        missing = missing_face_encoder_files(folder)
    return [f"face_encoder/{name}" for name in missing]


def missing_diffusers_files(model_dir: Path) -> list[str]:
    """Files of a diffusers pipeline folder that this one lacks (relative paths): ``model_index.json``,
    the transformer, VAE and text encoder (config + single or sharded safetensors), tokenizer, scheduler."""
    model_dir = Path(model_dir)
    missing = [] if (model_dir / "model_index.json").is_file() else ["model_index.json"]
    for component, subfolder in _component_folders(model_dir).items():
        missing += _missing_weights(model_dir, component, subfolder)
    tokenizer = model_dir / "tokenizer"
    if not (tokenizer / "tokenizer_config.json").is_file():
        missing.append("tokenizer/tokenizer_config.json")
    if not ((tokenizer / "spiece.model").is_file() or (tokenizer / "tokenizer.json").is_file()):
        missing.append("tokenizer/spiece.model (or tokenizer/tokenizer.json)")
    if not (model_dir / "scheduler" / "scheduler_config.json").is_file():
        missing.append("scheduler/scheduler_config.json")
    return missing


def missing_files(model_dir: Path) -> list[str]:
    """Paths (relative to ``model_dir``) that a complete model folder needs but this one lacks."""
    return missing_diffusers_files(model_dir) + _missing_face_encoder_files(Path(model_dir))


def require_complete(model_dir: Path) -> None:
    """Raise IngredientsError naming every missing or damaged file of the model folder (a config that does
    not parse, a transformer of another class, a cut-short weight file: see
    :func:`ingredients_model.folder_checks.damaged_files`) and how to get them."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise MissingWeightsError(
            f"Model folder {model_dir} does not exist.",
            model_dir,
            also="or write a tiny random model folder for tests with write_tiny_model_folder",
        )
    missing = missing_files(model_dir)
    if missing:
        listing = "\n".join(f"  - {name}" for name in missing)
        raise MissingWeightsError(
            f"Model folder {model_dir} is incomplete; {len(missing)} file(s) missing:\n{listing}",
            model_dir,
            also=f"or copy the files from a complete copy of {DEFAULT_REPO_ID}",
        )
    from ingredients_model.folder_checks import damaged_files

    damaged = damaged_files(model_dir)
    if damaged:
        listing = "\n".join(f"  - {problem}" for problem in damaged)
        raise MissingWeightsError(
            f"Model folder {model_dir} has {len(damaged)} damaged file(s):\n{listing}",
            model_dir,
            also=f"or replace them with the files of a complete copy of {DEFAULT_REPO_ID}",
        )


def _model_files(model_dir: Path) -> list[Path]:
    files = [model_dir / "model_index.json"]
    components = (transformer_subfolder(model_dir), "vae", "text_encoder", "tokenizer", "scheduler")
    for component in (*components, "face_encoder"):
        folder = model_dir / component
        if folder.is_dir():
            files += [
                p
                for p in folder.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(model_dir).parts)
            ]
    return sorted((p for p in files if p.is_file()), key=lambda p: p.relative_to(model_dir).as_posix())


def model_revision(model_dir: Path) -> str:
    """Stable fingerprint of a model folder's weights and configs (16 hex digits), for job keys.

    It covers the files that are loaded: ``transformer_ema/`` instead of ``transformer/`` when present.

    Small files (configs, tokenizer) are hashed whole; large weight files by name, size and three 1 MiB
    samples (start, middle, end), so fingerprinting a big folder takes milliseconds and survives copies.
    """
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    for path in _model_files(model_dir):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(model_dir).as_posix()}\0{size}\0".encode())
        with path.open("rb") as handle:
            if size <= _SMALL_FILE:
                digest.update(handle.read())
                continue
            for offset in (0, size // 2, size - _SAMPLE_BYTES):
                handle.seek(offset)
                digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()[:16]


def download_snapshot(local_dir: Path, repo_id: str, revision: str | None = None) -> Path:
    """Download (or resume downloading) a Hugging Face Hub repository into ``local_dir``; no checks.

    Uses ``huggingface_hub.snapshot_download``: files already present are skipped, interrupted files resume,
    tqdm progress bars show on the terminal. Raises IngredientsError if the hub cannot be reached.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    local_dir = Path(local_dir).expanduser().resolve()
    local_dir.mkdir(parents=True, exist_ok=True)
    try:
        snapshot_download(repo_id=repo_id, revision=revision, local_dir=local_dir)
    except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as exc:
        raise IngredientsError(
            f"Cannot download {repo_id}{'@' + revision if revision else ''}: {exc.__class__.__name__}.",
            hint="Check the repository id and revision; for gated or private repositories log in first "
            "with `hf auth login` (or set HF_TOKEN).",
        ) from exc
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise IngredientsError(
            f"Downloading {repo_id} into {local_dir} failed: {exc}",
            hint="Check the network connection to huggingface.co (and that HF_HUB_OFFLINE is not set), "
            "then run the same command again: finished files are kept and partial ones resume.",
        ) from exc
    return local_dir


def download_model(local_dir: Path, repo_id: str = DEFAULT_REPO_ID, revision: str | None = None) -> Path:
    """Download (or resume downloading) a model folder from the Hugging Face Hub into ``local_dir``.

    See :func:`download_snapshot`; raises IngredientsError if the downloaded folder is still incomplete.
    """
    local_dir = download_snapshot(local_dir, repo_id, revision)
    require_complete(local_dir)
    return local_dir


def _resolve_memory(memory: str, device: torch.device) -> str:
    if memory not in MEMORY_MODES:
        raise IngredientsError(
            f"Unknown memory mode {memory!r}.", hint=f"Use one of: {', '.join(MEMORY_MODES)}."
        )
    if memory == "model_offload" and device.type == "cpu":
        raise IngredientsError(
            f"Memory mode 'model_offload' moves whole models between the CPU and a GPU; it needs a GPU "
            f"device, not {device}.",
            hint="Use memory='none' (or 'auto') on the CPU.",
        )
    if memory != "auto":
        return memory
    if device.type != "cuda":
        return "none"
    from ingredients_model.memory import required_free_bytes  # computed from the configs, not measured

    free, _total = torch.cuda.mem_get_info(device)
    for mode in ("none", "model_offload"):
        if free >= required_free_bytes(mode):
            return mode
    return "group_offload"


def load_pipeline(
    model_dir: Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    memory: str = "auto",
) -> IngredientsPipeline:
    """Load an IngredientsPipeline from a model folder (released or tiny) onto ``device``.

    The transformer comes from ``transformer_ema/`` when the folder has one (``transformer_subfolder``).

    memory: ``none`` (everything on ``device``), ``model_offload`` (diffusers model CPU offload: one
    component on the GPU at a time), ``group_offload`` (block-level group offloading of every component),
    ``auto`` (picks by free GPU memory; ``none`` on CPU). Both offload modes also turn on VAE tiling and
    slicing. To free the T5 encoder after encoding all prompts, call ``pipe.free_text_encoder()``.
    """
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler
    from transformers import AutoTokenizer, T5EncoderModel

    from ingredients_model.pipeline import IngredientsPipeline
    from ingredients_model.transformer import IngredientsTransformer3DModel

    model_dir = Path(model_dir)
    require_complete(model_dir)
    device = torch.device(device)
    mode = _resolve_memory(memory, device)
    if mode == "model_offload" and device.type == "cpu":
        raise IngredientsError(
            f"Memory mode 'model_offload' moves whole models between the CPU and a GPU; it needs a GPU "
            f"device, not {device}.",
            hint="Use memory='none' (or 'auto') on the CPU.",
        )

    def load(subfolder: str, loader: Callable[[Path], Any]) -> Any:
        try:
            return loader(model_dir / subfolder)
        except MemoryError:
            raise
        except Exception as exc:  # whatever the library raises, the folder's files do not load
            raise MissingWeightsError(
                f"Cannot load {subfolder}/ of the model in {model_dir} (the folder looks complete, but a "
                f"file is damaged or from another model): {type(exc).__name__}: {exc}",
                model_dir,
            ) from exc

    pipe = IngredientsPipeline(
        tokenizer=load("tokenizer", AutoTokenizer.from_pretrained),
        text_encoder=load("text_encoder", lambda path: T5EncoderModel.from_pretrained(path, dtype=dtype)),
        vae=load("vae", lambda path: AutoencoderKLCogVideoX.from_pretrained(path, torch_dtype=dtype)),
        transformer=load(
            transformer_subfolder(model_dir),
            lambda path: IngredientsTransformer3DModel.from_pretrained(path, torch_dtype=dtype),
        ),
        scheduler=load("scheduler", CogVideoXDPMScheduler.from_pretrained),
    )
    configure_memory(pipe, device, mode)
    return pipe


def configure_memory(pipe: IngredientsPipeline, device: str | torch.device, memory: str) -> str:
    """Place a pipeline that is on the CPU (just built, or moved back with ``pipe.to("cpu")``) on ``device``
    in a memory mode (see ``load_pipeline``; ``auto`` is resolved here); returns the mode applied.

    Group offloading keeps the transformer's embeddings, face modules and output layers resident (about
    1.8 GB in bf16: ``encode_identities`` calls them outside ``forward``) and offloads each transformer block
    (block level), the text encoder and the VAE (leaf level, so ``vae.encode``/``decode`` onload too).
    """
    from diffusers.hooks import apply_group_offloading

    device = torch.device(device)
    mode = _resolve_memory(memory, device)
    if mode == "none":
        pipe.to(device)
        return mode
    pipe.vae.enable_tiling()
    pipe.vae.enable_slicing()
    if mode == "model_offload":
        pipe.enable_model_cpu_offload(device=device)
        return mode
    stream = device.type == "cuda"
    for module in (pipe.text_encoder, pipe.vae):
        apply_group_offloading(module, onload_device=device, offload_type="leaf_level", use_stream=stream)
    transformer = pipe.transformer
    for block in transformer.transformer_blocks:
        apply_group_offloading(
            block, onload_device=device, offload_type="block_level", num_blocks_per_group=1
        )
    for name, child in transformer.named_children():
        if name != "transformer_blocks":
            child.to(device)
    return mode
