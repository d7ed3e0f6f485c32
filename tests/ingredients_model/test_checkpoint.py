"""Model folders: tiny writer, completeness check, fingerprint, download arguments, load/save round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch

from ingredients_model import checkpoint, tiny
from ingredients_model.checkpoint import (
    DEFAULT_REPO_ID,
    download_model,
    load_pipeline,
    missing_files,
    model_revision,
    require_complete,
    write_tiny_model_folder,
)
from ingredients_model.errors import IngredientsError, MissingWeightsError
from ingredients_model.faces import RELEASED_FACE_ENCODER_FILES
from ingredients_model.pipeline import IngredientsPipeline
from ingredients_model.transformer import IngredientsTransformer3DModel

LAYOUT = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler", "face_encoder")


@pytest.fixture()
def copy_of(tiny_model_dir: Path, tmp_path: Path):
    def make(name: str = "copy") -> Path:
        return Path(shutil.copytree(tiny_model_dir, tmp_path / name))

    return make


def test_tiny_folder_has_the_released_layout(tiny_model_dir: Path):
    assert all((tiny_model_dir / name).is_dir() for name in LAYOUT)
    index = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["_class_name"] == "ConsisIDPipeline"  # the diffusers class IngredientsPipeline extends
    assert index["transformer"][1] == "IngredientsTransformer3DModel"
    config = json.loads((tiny_model_dir / "transformer" / "config.json").read_text())
    assert config["use_learned_positional_embeddings"] and config["use_rotary_positional_embeddings"]
    assert config["sample_height"] * 8 == tiny.TINY_SIZE["height"]
    assert config["sample_width"] * 8 == tiny.TINY_SIZE["width"]
    assert config["sample_width"] * 2 == config["sample_height"] * 3  # 3:2 like 720x480
    scheduler = json.loads((tiny_model_dir / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "CogVideoXDPMScheduler"
    assert {k: scheduler[k] for k in tiny.SCHEDULER_CONFIG} == tiny.SCHEDULER_CONFIG
    face = json.loads((tiny_model_dir / "face_encoder" / "config.json").read_text())
    assert (face["id_dim"], face["vit_dim"], face["num_scales"]) == (
        config["LFE_id_dim"],
        config["LFE_vit_dim"],
        config["LFE_num_scale"],
    )
    assert missing_files(tiny_model_dir) == []
    require_complete(tiny_model_dir)


def test_tiny_writer_is_deterministic_and_atomic(tmp_path: Path, tiny_model_dir: Path, monkeypatch):
    state = torch.get_rng_state()
    again = write_tiny_model_folder(tmp_path / "again")
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is untouched
    assert model_revision(again) == model_revision(tiny_model_dir)
    other = write_tiny_model_folder(tmp_path / "other", seed=1)
    assert model_revision(other) != model_revision(tiny_model_dir)
    # rewriting replaces the folder; a failing build leaves neither the folder nor a staging folder
    (again / "stray.txt").write_text("x")
    write_tiny_model_folder(again)
    assert not (again / "stray.txt").exists()

    def boom(root, seed):
        (root / "half-written").write_text("x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tiny, "_build_components", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_tiny_model_folder(tmp_path / "failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "other"]


def test_tokenizer_and_text_encoder_are_t5(tiny_model_dir: Path):
    from transformers import AutoTokenizer, T5EncoderModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir / "tokenizer")
    ids = tokenizer("a woman sits at a cafe table", padding="max_length", max_length=226).input_ids
    assert len(ids) == 226 and ids[ids.index(tokenizer.eos_token_id) + 1 :] == [0] * (225 - ids.index(1))
    assert tokenizer.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    encoder = T5EncoderModel.from_pretrained(tiny_model_dir / "text_encoder")
    assert (
        encoder.config.d_model
        == json.loads((tiny_model_dir / "transformer" / "config.json").read_text())["text_embed_dim"]
    )


def test_missing_files_names_each_missing_file(copy_of):
    model = copy_of()
    (model / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    (model / "tokenizer" / "tokenizer.json").unlink()
    (model / "scheduler" / "scheduler_config.json").unlink()
    (model / "face_encoder" / "tiny_face_encoder.safetensors").unlink()
    (model / "model_index.json").unlink()
    shutil.rmtree(model / "text_encoder")
    missing = missing_files(model)
    assert missing == [
        "model_index.json",
        "vae/diffusion_pytorch_model.safetensors (or the shards listed by "
        "diffusion_pytorch_model.safetensors.index.json)",
        "text_encoder/config.json",
        "text_encoder/model.safetensors (or the shards listed by model.safetensors.index.json)",
        "tokenizer/spiece.model (or tokenizer/tokenizer.json)",
        "scheduler/scheduler_config.json",
        "face_encoder/tiny_face_encoder.safetensors",
    ]
    with pytest.raises(IngredientsError) as info:
        require_complete(model)
    assert all(name in str(info.value) for name in missing)
    assert isinstance(info.value, MissingWeightsError) and info.value.model_dir == model
    assert (
        f"download the released weights (feizhengcong/Ingredients, about 25 GB) into {model}"
        in info.value.hint
    )
    with pytest.raises(IngredientsError, match="incomplete"):
        load_pipeline(model)


def test_sharded_weights_and_released_face_encoder(copy_of):
    model = copy_of()
    transformer = model / "transformer"
    (transformer / "diffusion_pytorch_model.safetensors").rename(
        transformer / "diffusion_pytorch_model-00001-of-00002.safetensors"
    )
    shards = {"a": "diffusion_pytorch_model-00001-of-00002.safetensors"}
    shards["b"] = "diffusion_pytorch_model-00002-of-00002.safetensors"
    index = transformer / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": shards}))
    shutil.rmtree(model / "face_encoder")
    (model / "face_encoder").mkdir()
    (model / "face_encoder" / "EVA02_CLIP_L_336_psz14_s6B.pt").write_bytes(b"x")
    missing = missing_files(model)
    assert missing[0] == "transformer/diffusion_pytorch_model-00002-of-00002.safetensors"
    expected_faces = [f"face_encoder/{n}" for n in RELEASED_FACE_ENCODER_FILES if not n.startswith("EVA02")]
    assert missing[1:] == expected_faces
    assert "face_encoder/models/antelopev2/glintr100.onnx" in missing
    index.write_text("{not json")
    assert missing_files(model)[0].startswith("transformer/diffusion_pytorch_model.safetensors.index.json")


def test_transformer_ema_is_checked_fingerprinted_and_loaded_instead(copy_of):
    """As the released infer.py: a transformer_ema/ folder, when present, is the transformer that runs."""
    model = copy_of()
    assert checkpoint.transformer_subfolder(model) == "transformer"
    plain = model_revision(model)
    shutil.copytree(model / "transformer", model / "transformer_ema")
    assert checkpoint.transformer_subfolder(model) == "transformer_ema"
    with_ema = model_revision(model)
    assert with_ema != plain  # the loaded folder's name is part of the fingerprint
    weights = model / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"!")  # transformer/ is no longer what loads
    assert model_revision(model) == with_ema
    weights.unlink()
    assert missing_files(model) == []
    ema_weights = model / "transformer_ema" / "diffusion_pytorch_model.safetensors"
    ema = IngredientsTransformer3DModel.from_pretrained(model / "transformer_ema")
    ema_weights.unlink()
    assert missing_files(model)[0].startswith("transformer_ema/diffusion_pytorch_model.safetensors")
    ema.proj_out.bias.data.fill_(0.25)
    ema.save_pretrained(model / "transformer_ema")
    assert model_revision(model) != with_ema
    pipe = load_pipeline(model, dtype=torch.float32)
    assert torch.equal(pipe.transformer.proj_out.bias, torch.full_like(pipe.transformer.proj_out.bias, 0.25))


def test_require_complete_on_a_missing_folder(tmp_path: Path):
    with pytest.raises(IngredientsError, match="does not exist") as info:
        require_complete(tmp_path / "nowhere")
    assert "download the released weights" in info.value.hint and "storyreel" not in info.value.hint


def test_model_revision_is_stable_and_tracks_weights_and_configs(copy_of, tiny_model_dir):
    first = model_revision(tiny_model_dir)
    assert len(first) == 16 and first == model_revision(tiny_model_dir)
    copy = copy_of()
    assert model_revision(copy) == first
    (copy / "README.md").write_text("not part of the model")
    assert model_revision(copy) == first
    config = copy / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"steps_offset": 0', '"steps_offset": 1'))
    assert model_revision(copy) != first
    other = copy_of("other")
    weights = other / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_revision(other) != first


def test_large_files_are_sampled(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(checkpoint, "_SAMPLE_BYTES", 4)
    monkeypatch.setattr(checkpoint, "_SMALL_FILE", 16)
    (tmp_path / "model_index.json").write_text("{}")
    (tmp_path / "vae").mkdir()
    weights = tmp_path / "vae" / "w.safetensors"
    weights.write_bytes(bytes(range(64)))
    base = model_revision(tmp_path)
    for index, changed in ((0, True), (33, True), (63, True), (10, False)):
        data = bytearray(range(64))
        data[index] ^= 0xFF
        weights.write_bytes(bytes(data))
        assert (model_revision(tmp_path) != base) is changed, index


def test_save_load_round_trip(tiny_model_dir: Path, tmp_path: Path):
    pipe = load_pipeline(tiny_model_dir, dtype=torch.float32, memory="none")
    assert isinstance(pipe, IngredientsPipeline)
    assert isinstance(pipe.transformer, IngredientsTransformer3DModel)
    copy = tmp_path / "saved"
    pipe.save_pretrained(copy)
    shutil.copytree(tiny_model_dir / "face_encoder", copy / "face_encoder")
    assert missing_files(copy) == []
    again = load_pipeline(copy, dtype=torch.float32, memory="none")
    for name in ("transformer", "vae", "text_encoder"):
        a, b = getattr(pipe, name).state_dict(), getattr(again, name).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert again.scheduler.config == pipe.scheduler.config
    assert again.tokenizer("a cafe").input_ids == pipe.tokenizer("a cafe").input_ids


def test_diffusers_from_pretrained_reads_the_tiny_folder(tiny_model_dir: Path):
    pipe = IngredientsPipeline.from_pretrained(tiny_model_dir)
    assert isinstance(pipe.transformer, IngredientsTransformer3DModel)
    assert pipe.frame_multiple == 8


def test_load_pipeline_dtype(tiny_model_dir: Path):
    pipe = load_pipeline(tiny_model_dir, dtype=torch.bfloat16)
    assert pipe.transformer.dtype == pipe.vae.dtype == pipe.text_encoder.dtype == torch.bfloat16


def test_load_pipeline_reports_damaged_weights(copy_of):
    model = copy_of()
    (model / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(IngredientsError, match=r"(?s)damaged file.*vae/diffusion_pytorch_model") as info:
        load_pipeline(model, dtype=torch.float32)  # found before loading (test_folder_checks has more)
    assert isinstance(info.value, MissingWeightsError) and info.value.model_dir == model


def test_download_model_arguments(tmp_path: Path, tiny_model_dir: Path, monkeypatch):
    calls = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        shutil.copytree(tiny_model_dir, kwargs["local_dir"], dirs_exist_ok=True)
        return str(kwargs["local_dir"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    target = download_model(tmp_path / "weights" / "ingredients")
    assert target == (tmp_path / "weights" / "ingredients").resolve()
    assert calls == [{"repo_id": DEFAULT_REPO_ID, "revision": None, "local_dir": target}]
    assert missing_files(target) == []
    download_model(target, repo_id="someone/fork", revision="abc123")
    assert calls[-1] == {"repo_id": "someone/fork", "revision": "abc123", "local_dir": target}


def test_download_model_errors(tmp_path: Path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(**kwargs):
        raise LocalEntryNotFoundError("cannot reach huggingface.co")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(IngredientsError, match="cannot reach") as info:
        download_model(tmp_path / "m")
    assert "network" in info.value.hint

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kwargs: str(kwargs["local_dir"]))
    with pytest.raises(IngredientsError, match="incomplete") as info:
        download_model(tmp_path / "m")
    assert "transformer/config.json" in str(info.value)


def test_released_style_folder_loads_through_the_same_path(copy_of, tmp_path: Path):
    """bf16 sharded transformer whose config says ConsisIDTransformer3DModel, sentencepiece tokenizer."""
    import sentencepiece

    model = copy_of()
    reference = IngredientsTransformer3DModel.from_pretrained(model / "transformer")
    shutil.rmtree(model / "transformer")
    reference.to(torch.bfloat16).save_pretrained(model / "transformer", max_shard_size="100KB")
    config_path = model / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(_class_name="ConsisIDTransformer3DModel", _diffusers_version="0.31.0")
    config_path.write_text(json.dumps(config))
    index = json.loads((model / "transformer" / "diffusion_pytorch_model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(tiny._CORPUS * 3))
    shutil.rmtree(model / "tokenizer")
    (model / "tokenizer").mkdir()
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(model / "tokenizer" / "spiece"),
        vocab_size=120,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    (model / "tokenizer" / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "T5Tokenizer", "model_max_length": 226, "extra_ids": 0})
    )
    assert missing_files(model) == []
    pipe = load_pipeline(model, dtype=torch.float32)
    loaded = pipe.transformer.state_dict()
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded[key], value.to(torch.bfloat16).float()), key
    assert pipe.tokenizer("a woman sits").input_ids[-1] == 1
