"""Starting points of stage 1: the released layout, ConsisID (face modules, new routers) and CogVideoX-5B-I2V
(new face modules, or ConsisID's), on tiny folders of each kind built with diffusers' own classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ingredients_model.errors import IngredientsError
from ingredients_model.tiny import tiny_transformer_config
from ingredients_model.training.start import (
    FACE_PREFIXES,
    ROUTER_PREFIX,
    face_encoder_dir,
    load_start_transformer,
    transformer_kind,
)

from .conftest import train_config, write_base_folder

TINY_FACE = {k: v for k, v in tiny_transformer_config().items() if k.startswith(("LFE_", "cross_attn"))}


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bases")
    return {
        "ingredients": tiny_model_dir,
        "consisid": write_base_folder(tiny_model_dir, root / "consisid", "consisid"),
        "cogvideox": write_base_folder(tiny_model_dir, root / "cogvideox", "cogvideox"),
    }


def _stored(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")


def _split(state: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
    face = {k: v for k, v in state.items() if k.startswith(FACE_PREFIXES)}
    routers = {k: v for k, v in state.items() if k.startswith(ROUTER_PREFIX)}
    dit = {k: v for k, v in state.items() if k not in face and k not in routers}
    return dit, face, routers


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k].to(a[k].dtype)) for k in a)


def test_kinds(bases: dict[str, Path]) -> None:
    assert {kind: transformer_kind(folder) for kind, folder in bases.items()} == {k: k for k in bases}


def test_consisid_keeps_its_face_modules_and_gets_new_routers(bases, tmp_path) -> None:
    config = train_config("stage1", bases["consisid"], tmp_path, tmp_path)
    state = load_start_transformer(config).state_dict()
    dit, face, routers = _split(state)
    stored_dit, stored_face, stored_routers = _split(_stored(bases["consisid"]))
    assert not stored_routers and routers
    assert _same(dit, stored_dit) and _same(face, stored_face)
    # new modules are seeded by the config: every process, and the export, build the same ones
    again = _split(load_start_transformer(config).state_dict())[2]
    other = _split(load_start_transformer(config.model_copy(update={"seed": 7})).state_dict())[2]
    assert _same(routers, again) and not _same(routers, other)


def test_cogvideox_gets_new_face_modules_or_consisids(bases, tmp_path) -> None:
    config = train_config("stage1", bases["cogvideox"], tmp_path, tmp_path, face_config=TINY_FACE)
    dit, face, routers = _split(load_start_transformer(config).state_dict())
    assert _same(dit, _stored(bases["cogvideox"])) and face and routers
    assert not _same(face, _split(_stored(bases["consisid"]))[1])
    # ConsisID's face modules on the CogVideoX DiT (their sizes come from ConsisID's config)
    borrowed = config.model_copy(update={"face_config": {}, "face_modules_from": bases["consisid"]})
    dit2, face2, _ = _split(load_start_transformer(borrowed).state_dict())
    assert _same(dit2, dit) and _same(face2, _split(_stored(bases["consisid"]))[1])
    # the face encoder of a CogVideoX start comes from face_encoder_dir, or from face_modules_from
    assert face_encoder_dir(borrowed) == bases["consisid"] / "face_encoder"
    with pytest.raises(IngredientsError, match="no face_encoder"):
        face_encoder_dir(config)


def test_wrong_starting_points_are_refused(bases, tmp_path) -> None:
    with pytest.raises(IngredientsError, match="face_config sizes new face modules"):
        load_start_transformer(
            train_config("stage1", bases["consisid"], tmp_path, tmp_path, face_config=TINY_FACE)
        )
    with pytest.raises(ValueError, match="face_config: unknown keys"):
        train_config("stage1", bases["cogvideox"], tmp_path, tmp_path, face_config={"LFE_width": 3})
    # face modules of another size
    bigger = {**TINY_FACE, "LFE_depth": 4}
    config = train_config("stage1", bases["cogvideox"], tmp_path, tmp_path, face_config=bigger)
    wide = load_start_transformer(config)
    folder = tmp_path / "wide"
    (folder / "transformer").mkdir(parents=True)
    wide.save_pretrained(folder / "transformer")
    with pytest.raises(IngredientsError, match=r"face modules of .* do not match ours"):
        load_start_transformer(
            train_config("stage1", bases["consisid"], tmp_path, tmp_path, face_modules_from=folder)
        )
    # a CogVideoX 1.5 transformer (temporal patches) cannot carry the modules
    v15 = tmp_path / "v15"
    (v15 / "transformer").mkdir(parents=True)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        (v15 / "transformer" / name).write_bytes((bases["cogvideox"] / "transformer" / name).read_bytes())
    cfg = json.loads((v15 / "transformer" / "config.json").read_text())
    (v15 / "transformer" / "config.json").write_text(json.dumps({**cfg, "patch_size_t": 2}))
    with pytest.raises(IngredientsError, match=r"CogVideoX 1\.5"):
        load_start_transformer(train_config("stage1", v15, tmp_path, tmp_path, face_config=TINY_FACE))


@pytest.mark.slow
def test_stage1_from_cogvideox_exports_a_complete_model(bases, prepared_dir: Path, tmp_path: Path) -> None:
    from ingredients_model.checkpoint import load_pipeline
    from ingredients_model.training.stage1 import run_stage1

    config = train_config(
        "stage1",
        bases["cogvideox"],
        prepared_dir,
        tmp_path / "run",
        face_config=TINY_FACE,
        face_encoder_dir=bases["ingredients"] / "face_encoder",
        max_steps=2,
        learning_rate=1e-3,
        export=True,
    )
    result = run_stage1(config)
    exported = result.exported
    assert (exported / "face_encoder" / "config.json").is_file()
    pipe = load_pipeline(exported, device="cpu", dtype=torch.float32)  # strict: every tensor is there
    params = {
        k: v.detach() for k, v in pipe.transformer.named_parameters()
    }  # (the fixed sin-cos buffer aside)
    dit, face, _ = _split(params)
    stored = _stored(bases["cogvideox"])
    trained = load_file(result.checkpoint / "trainable.safetensors")
    assert all(torch.equal(face[k], trained[k]) for k in face)  # the face modules trained from scratch
    changed = {k for k in dit if not torch.equal(dit[k], stored[k])}
    assert changed and all(k.startswith("transformer_blocks.") for k in changed)  # the merged LoRA
