"""Broken model folders: every damaged file is named before loading, and every load failure is the clear
"cannot load" error (MissingWeightsError), never an internal error."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ingredients_model.checkpoint import load_pipeline, require_complete
from ingredients_model.errors import MissingWeightsError
from ingredients_model.faces import RELEASED_FACE_ENCODER_FILES, TINY_WEIGHTS, load_face_encoder
from ingredients_model.folder_checks import damaged_files, unloadable_parts

WEIGHTS = "diffusion_pytorch_model.safetensors"


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_json(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _shard_index_lists_a_tensor_the_shard_lacks(model: Path) -> None:
    folder = model / "text_encoder"
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    index = {
        "weight_map": {
            "shared.weight": "model-00001-of-00001.safetensors",
            "nope": "model-00001-of-00001.safetensors",
        }
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def _released_face_encoder_with_a_cut_short_file(model: Path) -> None:
    folder = model / "face_encoder"
    shutil.rmtree(folder)
    for name in RELEASED_FACE_ENCODER_FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"onnx graph")
    eva = folder / "EVA02_CLIP_L_336_psz14_s6B.pt"
    with zipfile.ZipFile(eva, "w") as archive:
        archive.writestr("archive/data.pkl", b"x" * 1000)
    _cut(eva)
    (folder / "parsing_bisenet.pth").write_bytes(b"")


# (what is broken, how, the line damaged_files gives)
DAMAGED: list[tuple[str, Callable[[Path], None], str]] = [
    (
        "truncated transformer config",
        lambda m: _cut(m / "transformer" / "config.json"),
        "transformer/config.json: not valid JSON",
    ),
    (
        "model_index syntax error",
        lambda m: (m / "model_index.json").write_text('{"_class_name": "IngredientsPipeline",,}'),
        "model_index.json: not valid JSON",
    ),
    (
        "transformer of another class",
        lambda m: _edit_json(m / "transformer" / "config.json", _class_name="UNet2DConditionModel"),
        "transformer/config.json: names the class 'UNet2DConditionModel'",
    ),
    (
        "vae config not an object",
        lambda m: (m / "vae" / "config.json").write_text("[1]"),
        "vae/config.json: holds a JSON list",
    ),
    (
        "text encoder config empty",
        lambda m: (m / "text_encoder" / "config.json").write_text(""),
        "text_encoder/config.json: not valid JSON",
    ),
    (
        "truncated transformer weights",
        lambda m: _cut(m / "transformer" / WEIGHTS),
        f"transformer/{WEIGHTS}: damaged safetensors",
    ),
    (
        "vae weights are not safetensors",
        lambda m: (m / "vae" / WEIGHTS).write_bytes(b"<html>404</html>"),
        f"vae/{WEIGHTS}: damaged safetensors",
    ),
    (
        "shard index lists a missing tensor",
        _shard_index_lists_a_tensor_the_shard_lacks,
        "text_encoder/model-00001-of-00001.safetensors: lacks 1 tensor",
    ),
    (
        "tokenizer.json is {}",
        lambda m: (m / "tokenizer" / "tokenizer.json").write_text("{}"),
        "tokenizer/tokenizer.json: has no tokenizer model",
    ),
    (
        "truncated tokenizer config",
        lambda m: _cut(m / "tokenizer" / "tokenizer_config.json"),
        "tokenizer/tokenizer_config.json: not valid JSON",
    ),
    (
        "truncated scheduler config",
        lambda m: _cut(m / "scheduler" / "scheduler_config.json"),
        "scheduler/scheduler_config.json: not valid JSON",
    ),
    (
        "damaged face encoder weights",
        lambda m: _cut(m / "face_encoder" / TINY_WEIGHTS),
        f"face_encoder/{TINY_WEIGHTS}: damaged safetensors",
    ),
    (
        "face encoder config syntax error",
        lambda m: (m / "face_encoder" / "config.json").write_text("{"),
        "face_encoder/config.json: not valid JSON",
    ),
    (
        "released face encoder cut short",
        _released_face_encoder_with_a_cut_short_file,
        "face_encoder/EVA02_CLIP_L_336_psz14_s6B.pt: is cut short",
    ),
]

# (what is broken, how, the line unloadable_parts gives): files that parse, but do not load
UNLOADABLE: list[tuple[str, Callable[[Path], None], str]] = [
    (
        "transformer config of another size",
        lambda m: _edit_json(m / "transformer" / "config.json", num_layers=4),
        "transformer/config.json: the weights lack",
    ),
    (
        "transformer config with other widths",
        lambda m: _edit_json(m / "transformer" / "config.json", attention_head_dim=8),
        "transformer/config.json: ",
    ),
    (
        "vae config with a bad value",
        lambda m: _edit_json(m / "vae" / "config.json", block_out_channels="wide"),
        "vae/config.json: does not build",
    ),
    (
        "text encoder config of another size",
        lambda m: _edit_json(m / "text_encoder" / "config.json", d_model=48),
        "text_encoder/config.json: ",
    ),
    (
        "tokenizer model is empty",
        lambda m: _edit_json(m / "tokenizer" / "tokenizer.json", model={}),
        "tokenizer: does not load",
    ),
    (
        "unknown beta schedule",
        lambda m: _edit_json(m / "scheduler" / "scheduler_config.json", beta_schedule="cosine-ish"),
        "scheduler: does not load",
    ),
    (
        "face encoder config without its sizes",
        lambda m: _edit_json(m / "face_encoder" / "config.json", hidden=None),
        "face_encoder: does not load",
    ),
]


@pytest.fixture()
def model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def test_an_intact_folder_has_no_problems(tiny_model_dir: Path) -> None:
    assert damaged_files(tiny_model_dir) == [] and unloadable_parts(tiny_model_dir) == []


@pytest.mark.parametrize(
    "damage, expected", [case[1:] for case in DAMAGED], ids=[case[0] for case in DAMAGED]
)
def test_damaged_files_are_named_and_refused(model: Path, damage, expected: str) -> None:
    damage(model)
    problems = damaged_files(model)
    assert any(line.startswith(expected) for line in problems), problems
    with pytest.raises(MissingWeightsError, match="damaged file") as err:
        require_complete(model)
    assert expected in err.value.message and "download the released weights" in (err.value.hint or "")


@pytest.mark.parametrize(
    "damage, expected", [case[1:] for case in UNLOADABLE], ids=[case[0] for case in UNLOADABLE]
)
def test_parts_that_do_not_load_are_named(model: Path, damage, expected: str) -> None:
    damage(model)
    assert damaged_files(model) == []
    problems = unloadable_parts(model)
    assert any(line.startswith(expected) for line in problems), problems


@pytest.mark.parametrize("part", ["tokenizer", "transformer", "text_encoder", "scheduler"])
def test_every_load_failure_is_cannot_load(model: Path, part: str) -> None:
    damage = {name: how for name, how, _ in UNLOADABLE}
    case = {
        "tokenizer": "tokenizer model is empty",
        "transformer": "transformer config of another size",
        "text_encoder": "text encoder config of another size",
        "scheduler": "unknown beta schedule",
    }[part]
    damage[case](model)
    with pytest.raises(MissingWeightsError, match=f"Cannot load {part}/ of the model in"):
        load_pipeline(model, dtype=__import__("torch").float32)


def test_a_damaged_face_encoder_is_cannot_load(model: Path) -> None:
    _cut(model / "face_encoder" / TINY_WEIGHTS)
    with pytest.raises(MissingWeightsError, match="Cannot load the face encoder") as err:
        load_face_encoder(model / "face_encoder")
    assert "storyreel" not in str(err.value)  # the model package keeps its own words
    (model / "face_encoder" / "config.json").write_text("[1]")
    with pytest.raises(Exception, match="unknown face encoder type") as other:
        load_face_encoder(model / "face_encoder")
    assert type(other.value).__name__ == "IngredientsError"


def test_the_transformer_is_checked_where_it_is_loaded_from(model: Path) -> None:
    shutil.copytree(model / "transformer", model / "transformer_ema")  # the released inference loads it
    assert damaged_files(model) == [] and unloadable_parts(model) == []
    _cut(model / "transformer" / WEIGHTS)  # not loaded when transformer_ema/ is there
    assert damaged_files(model) == []
    _cut(model / "transformer_ema" / "config.json")
    assert [line.split(":")[0] for line in damaged_files(model)] == ["transformer_ema/config.json"]
