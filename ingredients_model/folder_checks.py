"""Is a model folder intact? Checks beyond "every file is there"
(:func:`~ingredients_model.checkpoint.missing_files`).

The transformer is checked where it is loaded from: ``transformer_ema/`` when the folder has one.

* :func:`damaged_files` (cheap: configs and file headers only, run before every load): every JSON
  config and index parses as an object; the transformer and VAE configs name classes this package
  loads; every safetensors file has a whole header that covers the file, and a shard index only names
  tensors its shards hold; the tokenizer and face-encoder files are not empty or cut short.
* :func:`unloadable_parts` (thorough: what a health check runs): loads the small parts for real (the
  tokenizer, the scheduler, the tiny face encoder) and builds the transformer, VAE and text encoder from
  their configs on the meta device (no memory), comparing every tensor name and shape with the weight
  files' headers.

Each problem is one line, ``<path in the folder>: <what is wrong>``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingredients_model.checkpoint import _WEIGHT_COMPONENTS, _component_folders
from ingredients_model.released import TRANSFORMER_CLASS

__all__ = ["TRANSFORMER_CLASSES", "damaged_files", "unloadable_parts"]

TRANSFORMER_CLASSES = (TRANSFORMER_CLASS, "IngredientsTransformer3DModel")
"""``_class_name`` values of ``transformer/config.json`` that load: the release's, and what
:class:`~ingredients_model.transformer.IngredientsTransformer3DModel` writes itself."""
VAE_CLASS = "AutoencoderKLCogVideoX"


def _json_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the JSON object in ``path``, None) or (None, what is wrong with it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as err:
        return None, f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}; cut short?)"
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    if not isinstance(data, dict):
        return None, f"holds a JSON {type(data).__name__}, not an object"
    return data, None


def _safetensors_keys(path: Path) -> tuple[dict[str, list[int]] | None, str | None]:
    """({tensor name: shape}, None) from a safetensors file's header, or (None, what is wrong). Only the
    header is read; safetensors checks that it describes exactly the bytes of the file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}, None  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError) as err:
        return None, f"damaged safetensors file ({err})"


class _Report:
    """Problems found, as ``<relative path>: <problem>`` lines."""

    def __init__(self, model_dir: Path):
        self.model_dir = model_dir
        self.lines: list[str] = []

    def add(self, path: Path, problem: str) -> None:
        self.lines.append(f"{path.relative_to(self.model_dir).as_posix()}: {problem}")

    def config(self, path: Path) -> dict[str, Any] | None:
        """The JSON object in ``path`` (None when absent or damaged; damage is reported)."""
        if not path.is_file():
            return None
        data, problem = _json_object(path)
        if problem:
            self.add(path, problem)
        return data

    def class_name(self, path: Path, data: dict[str, Any] | None, allowed: tuple[str, ...]) -> None:
        name = (data or {}).get("_class_name")
        if data is not None and name not in allowed:
            self.add(
                path,
                f"names the class {name!r}, expected {' or '.join(allowed)} (a folder of another model?)",
            )

    def not_empty(self, path: Path) -> bool:
        if path.is_file() and path.stat().st_size == 0:
            self.add(path, "is empty")
            return False
        return path.is_file()


def _weights(report: _Report, component: str) -> dict[str, list[int]] | None:
    """Check a component's weight files (single file or shards + index); return all tensor shapes."""
    _, single, index_name = _WEIGHT_COMPONENTS[component]
    folder = report.model_dir / _component_folders(report.model_dir)[component]
    index = report.config(folder / index_name)
    if (folder / index_name).is_file():
        weight_map = (index or {}).get("weight_map")
        if index is not None and (
            not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values())
        ):
            report.add(folder / index_name, "has no weight_map of tensor name → shard file")
            return None
        if not isinstance(weight_map, dict):
            return None
        shapes: dict[str, list[int]] = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                continue  # reported by missing_files
            found, problem = _safetensors_keys(folder / shard)
            if problem:
                report.add(folder / shard, problem)
                return None
            shapes.update(found or {})
            listed = [
                name for name, file in weight_map.items() if file == shard and name not in (found or {})
            ]
            if listed:
                report.add(folder / shard, f"lacks {len(listed)} tensor(s) its index lists, e.g. {listed[0]}")
                return None
        return shapes
    if not (folder / single).is_file():
        return None
    shapes, problem = _safetensors_keys(folder / single)
    if problem:
        report.add(folder / single, problem)
    return shapes


def _face_encoder(report: _Report) -> None:
    from ingredients_model.faces import RELEASED_FACE_ENCODER_FILES, TINY_WEIGHTS

    folder = report.model_dir / "face_encoder"
    config = report.config(folder / "config.json")
    if (folder / "config.json").is_file():
        if config is not None and config.get("type") == "tiny_random" and (folder / TINY_WEIGHTS).is_file():
            _, problem = _safetensors_keys(folder / TINY_WEIGHTS)
            if problem:
                report.add(folder / TINY_WEIGHTS, problem)
        return
    for name in RELEASED_FACE_ENCODER_FILES:
        path = folder / name
        if not report.not_empty(path):
            continue
        with path.open("rb") as handle:
            zipped = handle.read(4) == b"PK\x03\x04"  # torch.save's zip format
        if zipped and not zipfile.is_zipfile(path):
            report.add(path, "is cut short (its zip directory is missing)")


def damaged_files(model_dir: Path) -> list[str]:
    """Problems with the files a model folder has (see the module docstring); ``[]`` when none.

    Cheap: reads the JSON files and the headers of the weight files. Files that are absent are
    :func:`~ingredients_model.checkpoint.missing_files`' to report, not this function's.
    """
    report = _Report(Path(model_dir))
    root = report.model_dir
    report.config(root / "model_index.json")
    for component, subfolder in _component_folders(root).items():
        path = root / subfolder / _WEIGHT_COMPONENTS[component][0]
        config = report.config(path)
        if component == "transformer":
            report.class_name(path, config, TRANSFORMER_CLASSES)
        elif component == "vae":
            report.class_name(path, config, (VAE_CLASS,))
        _weights(report, component)
    tokenizer = root / "tokenizer"
    report.config(tokenizer / "tokenizer_config.json")
    tokens = report.config(tokenizer / "tokenizer.json")
    if tokens is not None and not isinstance(tokens.get("model"), dict):
        report.add(tokenizer / "tokenizer.json", "has no tokenizer model (not a tokenizers file)")
    report.not_empty(tokenizer / "spiece.model")
    report.config(root / "scheduler" / "scheduler_config.json")
    _face_encoder(report)
    return report.lines


def _meta_model_problem(build: Callable[[], Any], shapes: dict[str, list[int]] | None) -> str | None:
    """Build a model on the meta device; say what its state dict lacks or shapes differently in ``shapes``."""
    import torch

    with torch.device("meta"):
        model = build()
    if shapes is None:
        return None
    tied = set(getattr(model, "_tied_weights_keys", None) or ())  # stored once, under their source's name
    wanted = {name: list(tensor.shape) for name, tensor in model.state_dict().items() if name not in tied}
    absent = [name for name in wanted if name not in shapes]
    if absent:
        return (
            f"the weights lack {len(absent)} of the {len(wanted)} tensors its config needs, e.g. {absent[0]}"
        )
    differ = [name for name in wanted if shapes[name] != wanted[name]]
    if differ:
        name = differ[0]
        return (
            f"{len(differ)} tensor shape(s) differ from its config, e.g. {name}: {shapes[name]} in the "
            f"weights, {wanted[name]} from the config (weights and config of different models?)"
        )
    return None


def unloadable_parts(model_dir: Path) -> list[str]:
    """Problems found by loading the small parts and building the large ones on the meta device (see the
    module docstring); ``[]`` when every part loads. Run :func:`damaged_files` first: this assumes the
    files parse. Takes seconds (the released transformer has 1491 tensors)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    from ingredients_model.faces import load_face_encoder
    from ingredients_model.transformer import IngredientsTransformer3DModel

    model_dir = Path(model_dir)
    report = _Report(model_dir)
    shapes = {component: _weights(_Report(model_dir), component) for component in _WEIGHT_COMPONENTS}
    folders = _component_folders(model_dir)
    builders: dict[str, Callable[[], Any]] = {
        "transformer": lambda: IngredientsTransformer3DModel.from_config(
            IngredientsTransformer3DModel.load_config(model_dir / folders["transformer"])
        ),
        "vae": lambda: AutoencoderKLCogVideoX.from_config(
            AutoencoderKLCogVideoX.load_config(model_dir / "vae")
        ),
        "text_encoder": lambda: T5EncoderModel(T5Config.from_pretrained(model_dir / "text_encoder")),
    }
    for component, build in builders.items():
        config = model_dir / folders[component] / "config.json"
        try:
            problem = _meta_model_problem(build, shapes[component])
        except Exception as err:  # any failure to build from the config means the same: it does not load
            problem = f"does not build the model ({type(err).__name__}: {err})"
        if problem:
            report.add(config, problem)
    small: dict[str, Callable[[], Any]] = {
        "tokenizer": lambda: AutoTokenizer.from_pretrained(model_dir / "tokenizer"),
        "scheduler": lambda: CogVideoXDPMScheduler.from_pretrained(model_dir / "scheduler"),
    }
    if (model_dir / "face_encoder" / "config.json").is_file():  # the tiny encoder is small: load it
        small["face_encoder"] = lambda: load_face_encoder(model_dir / "face_encoder")
    for part, load in small.items():
        try:
            load()
        except Exception as err:  # whatever the library raises, the part does not load
            message = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
            report.add(model_dir / part, f"does not load ({message})")
    return report.lines
