"""Where training starts: the transformer built from the base model folder, whatever its kind.

``model_dir``'s transformer can be

- ``ingredients``: the released Ingredients layout (DiT + face modules + routers), or an export of ours;
- ``consisid``: ConsisID (``ConsisIDTransformer3DModel``: the same DiT and face-module layout, no routers);
- ``cogvideox``: CogVideoX-5B-I2V (``CogVideoXTransformer3DModel``: the DiT only).

Whatever is missing is newly initialised (each layer's own ``reset_parameters``, seeded by the config's
``seed`` so that every process and the export rebuild the same weights; diffusers' loader leaves missing
weights uninitialised): the routers for ConsisID, the face modules and routers for CogVideoX.
``face_modules_from`` names another folder whose facial extractor and perceiver cross-attentions replace
ours (e.g. ConsisID's on a CogVideoX DiT; their sizes come from its config); new face modules are sized by
``face_config`` (the released architecture by default). The face encoder comes from ``face_encoder_dir``,
else ``model_dir/face_encoder``, else ``face_modules_from/face_encoder``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ingredients_model.errors import IngredientsError
from ingredients_model.training.config import FACE_CONFIG_KEYS, TrainConfig

log = logging.getLogger(__name__)

FACE_PREFIXES = ("local_facial_extractor.", "perceiver_cross_attention.")
ROUTER_PREFIX = "router."
KINDS = ("ingredients", "consisid", "cogvideox")
_INDEX = "diffusion_pytorch_model.safetensors.index.json"
_SINGLE = "diffusion_pytorch_model.safetensors"


def checkpoint_keys(transformer_dir: Path) -> set[str]:
    """The parameter names stored in a diffusers transformer folder (from its index or file header)."""
    folder = Path(transformer_dir)
    if (folder / _INDEX).is_file():
        return set(json.loads((folder / _INDEX).read_text())["weight_map"])
    if (folder / _SINGLE).is_file():
        from safetensors import safe_open

        with safe_open(str(folder / _SINGLE), framework="pt") as handle:
            return set(handle.keys())
    raise IngredientsError(
        f"no transformer weights in {folder} ({_SINGLE} or {_INDEX})",
        "point model_dir at a complete model folder",
    )


def transformer_kind(model_dir: Path) -> str:
    """``ingredients``, ``consisid`` or ``cogvideox`` (see the module docstring), from the stored weights."""
    keys = checkpoint_keys(Path(model_dir) / "transformer")
    if any(k.startswith(ROUTER_PREFIX) for k in keys):
        return "ingredients"
    if any(k.startswith(FACE_PREFIXES) for k in keys):
        return "consisid"
    return "cogvideox"


def _read_config(model_dir: Path) -> dict:
    path = Path(model_dir) / "transformer" / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IngredientsError(
            f"cannot read {path}: {exc}", "point model_dir at a complete model folder"
        ) from exc


def _check_cogvideox_config(model_dir: Path, config: dict) -> None:
    """The DiT must be CogVideoX 1.0 I2V-shaped (no temporal patches, no ofs embedding, image channels)."""
    problems = []
    if config.get("patch_size_t") is not None:
        problems.append(f"patch_size_t {config['patch_size_t']} (CogVideoX 1.5)")
    if config.get("ofs_embed_dim") is not None:
        problems.append(f"ofs_embed_dim {config['ofs_embed_dim']} (CogVideoX 1.5)")
    if config.get("in_channels", 0) != 2 * config.get("out_channels", -1):
        problems.append("in_channels is not 2 × out_channels (a text-to-video model, not image-to-video)")
    if problems:
        raise IngredientsError(
            f"{model_dir}: this transformer cannot carry the Ingredients modules: " + "; ".join(problems),
            "start from CogVideoX-5B-I2V (THUDM/CogVideoX-5b-I2V), ConsisID or the released Ingredients",
        )


def face_encoder_dir(config) -> Path:
    """The face encoder folder for training data and exports (see the module docstring)."""
    candidates = [getattr(config, "face_encoder_dir", None), Path(config.model_dir) / "face_encoder"]
    source = getattr(config, "face_modules_from", None)
    if source is not None:
        candidates.append(Path(source) / "face_encoder")
    for folder in candidates:
        if folder is not None and Path(folder).is_dir():
            return Path(folder)
    raise IngredientsError(
        f"{config.model_dir} has no face_encoder/ and no face_encoder_dir is set",
        "set face_encoder_dir to the face_encoder/ folder of the released Ingredients or ConsisID model",
    )


def load_start_transformer(config: TrainConfig, dtype: torch.dtype = torch.float32):
    """The transformer training starts from (see the module docstring), in ``dtype``."""
    from ingredients_model.transformer import IngredientsTransformer3DModel

    model_dir = Path(config.model_dir)
    folder = model_dir / "transformer"
    if not (folder / "config.json").is_file():
        raise IngredientsError(f"no transformer in {folder}", "point model_dir at a complete model folder")
    kind = transformer_kind(model_dir)
    source = Path(config.face_modules_from) if config.face_modules_from is not None else None
    overrides: dict = {}
    if kind == "cogvideox":
        _check_cogvideox_config(model_dir, _read_config(model_dir))
        overrides["is_train_face"] = True
        if source is not None:
            source_config = _read_config(source)
            overrides.update({k: source_config[k] for k in FACE_CONFIG_KEYS if k in source_config})
    if config.face_config:
        if kind != "cogvideox" or source is not None:
            raise IngredientsError(
                "face_config sizes new face modules, but these come from "
                + (str(source) if source is not None else f"{model_dir} ({kind})"),
                "remove face_config",
            )
        overrides.update(config.face_config)
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # its list of every new tensor; we log the modules below
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        try:
            # diffusers' own loader (the class's strict override refuses missing modules): new modules keep
            # their initialisation, and the key check below says which may be new
            transformer, info = super(
                IngredientsTransformer3DModel, IngredientsTransformer3DModel
            ).from_pretrained(
                folder, torch_dtype=dtype, low_cpu_mem_usage=False, output_loading_info=True, **overrides
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise IngredientsError(
                f"cannot build the Ingredients transformer from {folder}: {str(exc)[:400]}",
                "model_dir must hold released Ingredients, ConsisID or CogVideoX-5B-I2V weights",
            ) from exc
        finally:
            diffusers_logging.set_verbosity(verbosity)
    missing = set(info.get("missing_keys", []))
    allowed = {"ingredients": (), "consisid": (ROUTER_PREFIX,), "cogvideox": (*FACE_PREFIXES, ROUTER_PREFIX)}[
        kind
    ]
    unexpected = sorted(info.get("unexpected_keys", []))
    wrong = sorted(k for k in missing if not k.startswith(allowed)) if allowed else sorted(missing)
    if wrong or unexpected or info.get("mismatched_keys"):
        raise IngredientsError(
            f"{folder} ({kind}) does not match the Ingredients layout: missing {wrong[:3]}, unexpected "
            f"{unexpected[:3]}, mismatched {list(info.get('mismatched_keys', []))[:3]}",
            "model_dir must hold released Ingredients, ConsisID or CogVideoX-5B-I2V weights",
        )
    new_modules = sorted({k.split(".")[0] for k in missing})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        for name in new_modules:
            _initialise(getattr(transformer, name))
    if source is not None:
        _load_face_modules(transformer, source)
        new_modules = [m for m in new_modules if not f"{m}.".startswith(FACE_PREFIXES)]
    log.info(
        "start: %s transformer from %s%s; new: %s",
        kind,
        model_dir,
        f", face modules from {source}" if source is not None else "",
        ", ".join(new_modules) or "nothing",
    )
    return transformer


def _initialise(module: torch.nn.Module) -> None:
    """Initialise every layer of ``module`` as its constructor does (diffusers' ``from_pretrained`` builds
    models with ``torch.nn.init`` switched off, so weights it does not load hold uninitialised memory)."""
    for layer in module.modules():
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()


def _load_face_modules(transformer, source: Path) -> None:
    """Copy the facial extractor and perceiver cross-attentions of ``source``'s transformer into ours."""
    from safetensors import safe_open

    folder = Path(source) / "transformer"
    keys = sorted(k for k in checkpoint_keys(folder) if k.startswith(FACE_PREFIXES))
    own = {k: v for k, v in transformer.state_dict().items() if k.startswith(FACE_PREFIXES)}
    if set(keys) != set(own):
        raise IngredientsError(
            f"face modules of {source} do not match ours: missing {sorted(set(own) - set(keys))[:3]}, "
            f"unexpected {sorted(set(keys) - set(own))[:3]}",
            "face_modules_from must be a ConsisID or Ingredients folder of the same size",
        )
    if (folder / _INDEX).is_file():
        weight_map = json.loads((folder / _INDEX).read_text())["weight_map"]
        files = sorted({weight_map[k] for k in keys})
    else:
        files = [_SINGLE]
    state = {}
    for name in files:
        with safe_open(str(folder / name), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                if key in own:
                    state[key] = handle.get_tensor(key)
    bad = [k for k, v in state.items() if v.shape != own[k].shape]
    if bad:
        raise IngredientsError(
            f"face modules of {source} have other sizes ({bad[0]}: {tuple(state[bad[0]].shape)} vs "
            f"{tuple(own[bad[0]].shape)})",
            "face_modules_from must be a ConsisID or Ingredients folder of the same size",
        )
    with torch.no_grad():
        params = dict(transformer.named_parameters())
        buffers = dict(transformer.named_buffers())
        for key, value in state.items():
            target = params.get(key, buffers.get(key))
            target.copy_(value.to(target.dtype))
