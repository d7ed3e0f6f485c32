"""Wan VACE model folders: tiny writer, completeness, record, download, loading and memory modes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image

from storyreel.errors import StoryreelError
from storyreel.models import wan_vace
from storyreel.models.wan_vace import (
    FOLDER_RECORD,
    VARIANTS,
    WAN_480P,
    FolderRecord,
    NativeFormat,
    download,
    load_pipeline,
    memory_thresholds,
    missing_files,
    model_revision,
    native_format,
    read_record,
    require_complete,
    write_record,
)
from storyreel.models.wan_vace_tiny import TINY_NATIVE

LAYOUT = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")


@pytest.fixture()
def copy_of(tiny_wan_dir: Path, tmp_path: Path):
    def make(name: str = "copy") -> Path:
        return Path(shutil.copytree(tiny_wan_dir, tmp_path / name))

    return make


def _run(pipe, references: list[Image.Image] | None, frames: int = 9, seed: int = 0) -> np.ndarray:
    return pipe(
        prompt="a woman laughing at a cafe table",
        negative_prompt="",
        reference_images=references,
        height=TINY_NATIVE.height,
        width=TINY_NATIVE.width,
        num_frames=frames,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
        max_sequence_length=512,
    ).frames[0]


def test_tiny_folder_is_a_diffusers_wan_vace_folder(tiny_wan_dir: Path) -> None:
    assert all((tiny_wan_dir / name).is_dir() for name in LAYOUT)
    index = json.loads((tiny_wan_dir / "model_index.json").read_text())
    assert index["_class_name"] == "WanVACEPipeline"
    assert (index["transformer"][1], index["vae"][1], index["text_encoder"][1]) == (
        "WanVACETransformer3DModel",
        "AutoencoderKLWan",
        "UMT5EncoderModel",
    )
    scheduler = json.loads((tiny_wan_dir / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "UniPCMultistepScheduler" and scheduler["use_flow_sigmas"]
    assert missing_files(tiny_wan_dir) == []
    require_complete(tiny_wan_dir)
    assert read_record(tiny_wan_dir) == FolderRecord("tiny", None, None, TINY_NATIVE)
    assert native_format(tiny_wan_dir) == TINY_NATIVE


def test_tiny_writer_is_reproducible_and_atomic(tiny_wan_dir: Path, tmp_path: Path) -> None:
    from storyreel.models.wan_vace_tiny import write_tiny_folder

    state = torch.random.get_rng_state()
    again = write_tiny_folder(tmp_path / "again")
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random state is untouched
    assert model_revision(again) == model_revision(tiny_wan_dir)
    assert model_revision(write_tiny_folder(tmp_path / "other", seed=1)) != model_revision(tiny_wan_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "other"]  # no staging folders left


def test_missing_files_and_the_wrong_pipeline_are_named(copy_of) -> None:
    model = copy_of()
    (model / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    (model / "tokenizer" / "tokenizer.json").unlink()
    assert missing_files(model) == [
        "transformer/diffusion_pytorch_model.safetensors (or the shards listed by "
        "diffusion_pytorch_model.safetensors.index.json)",
        "tokenizer/spiece.model (or tokenizer/tokenizer.json)",
    ]
    with pytest.raises(StoryreelError, match="2 problem") as info:
        require_complete(model)
    assert "storyreel models download wan-vace-1.3b" in info.value.hint

    other = copy_of("other")
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name": "IngredientsPipeline"}))
    assert missing_files(other) == ["model_index.json of a WanVACEPipeline (this one is IngredientsPipeline)"]
    with pytest.raises(StoryreelError, match="does not exist") as info:
        require_complete(other / "nowhere")
    assert "models tiny DIR --engine wan-vace" in info.value.hint


def test_sharded_transformer_folder_is_complete_until_a_shard_is_missing(copy_of) -> None:
    from diffusers import WanVACETransformer3DModel

    model = copy_of()
    transformer = WanVACETransformer3DModel.from_pretrained(model / "transformer")
    shutil.rmtree(model / "transformer")
    transformer.save_pretrained(model / "transformer", max_shard_size="20KB")
    shards = sorted((model / "transformer").glob("*.safetensors"))
    assert (
        len(shards) > 1
        and (model / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    )
    assert missing_files(model) == []
    shards[0].unlink()
    assert missing_files(model) == [f"transformer/{shards[0].name}"]


def test_native_format_comes_from_the_record(copy_of) -> None:
    model = copy_of()
    (model / FOLDER_RECORD).unlink()
    assert native_format(model) == WAN_480P == NativeFormat(832, 480, 16, 81)
    record = FolderRecord("wan-vace-14b", VARIANTS["wan-vace-14b"].repo_id, "abc", WAN_480P)
    write_record(model, record)
    assert read_record(model) == record
    (model / FOLDER_RECORD).write_text("{not json")
    with pytest.raises(StoryreelError, match="damaged"):
        native_format(model)


def test_variants_are_the_released_diffusers_repositories() -> None:
    assert {name: v.repo_id for name, v in VARIANTS.items()} == {
        "wan-vace-1.3b": "Wan-AI/Wan2.1-VACE-1.3B-diffusers",
        "wan-vace-14b": "Wan-AI/Wan2.1-VACE-14B-diffusers",
    }


def test_download_resumes_into_the_folder_and_records_the_variant(
    tiny_wan_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    calls = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        shutil.copytree(
            tiny_wan_dir, kwargs["local_dir"], dirs_exist_ok=True, ignore=lambda *a: [FOLDER_RECORD]
        )
        return str(kwargs["local_dir"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    target = download("wan-vace-1.3b", tmp_path / "models" / "wan")
    assert calls == [{"repo_id": "Wan-AI/Wan2.1-VACE-1.3B-diffusers", "revision": None, "local_dir": target}]
    assert read_record(target) == FolderRecord(
        "wan-vace-1.3b", VARIANTS["wan-vace-1.3b"].repo_id, None, WAN_480P
    )
    download("wan-vace-14b", target, revision="r1", repo_id="someone/fork")
    assert calls[-1] == {"repo_id": "someone/fork", "revision": "r1", "local_dir": target}
    assert read_record(target).variant == "wan-vace-14b"
    with pytest.raises(StoryreelError, match="unknown Wan VACE variant"):
        download("wan-vace-7b", target)


def test_download_errors_say_what_to_do(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(**kwargs):
        raise LocalEntryNotFoundError("cannot reach huggingface.co")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(StoryreelError, match="cannot reach") as info:
        download("wan-vace-1.3b", tmp_path / "m")
    assert "network" in info.value.hint
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kwargs: str(kwargs["local_dir"]))
    with pytest.raises(StoryreelError, match="incomplete"):
        download("wan-vace-1.3b", tmp_path / "m")
    assert not (tmp_path / "m" / FOLDER_RECORD).exists()


def test_memory_thresholds_count_the_folder_weights(tiny_wan_dir: Path) -> None:
    pipe = load_pipeline(tiny_wan_dir, memory="none")
    count = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in LAYOUT[:3]}
    gib = 2**30
    none, offload = memory_thresholds(tiny_wan_dir)
    weights = (2 * count["transformer"] + 2 * count["text_encoder"] + 4 * count["vae"]) / gib
    assert none == pytest.approx(weights + wan_vace.ACTIVATIONS_GIB)
    big = max(2 * count["text_encoder"] / gib, 2 * count["transformer"] / gib + wan_vace.ACTIVATIONS_GIB)
    assert offload == pytest.approx(big)


def test_load_pipeline_uses_diffusers_classes(tiny_wan_dir: Path) -> None:
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanVACEPipeline

    pipe = load_pipeline(tiny_wan_dir, memory="auto")
    assert isinstance(pipe, WanVACEPipeline) and isinstance(pipe.vae, AutoencoderKLWan)
    assert isinstance(pipe.scheduler, UniPCMultistepScheduler) and pipe.scheduler.config.flow_shift == 3.0
    assert pipe.vae.dtype == torch.float32 and pipe.transformer.dtype == torch.float32  # float32 on the CPU
    with pytest.raises(StoryreelError, match="no GPU"):
        load_pipeline(tiny_wan_dir, memory="model_offload")
    with pytest.raises(StoryreelError, match="unknown memory mode"):
        load_pipeline(tiny_wan_dir, memory="lots")


def test_damaged_weights_are_a_clear_error(copy_of) -> None:
    model = copy_of()
    (model / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(StoryreelError, match="cannot load the Wan VACE model") as info:
        load_pipeline(model)
    assert "to repair it" in info.value.hint


@pytest.mark.slow
def test_references_condition_the_video_and_group_offload_matches(tiny_wan_dir: Path) -> None:
    pipe = load_pipeline(tiny_wan_dir, memory="none")
    face = Image.new("RGB", (40, 52), (210, 160, 130))
    plain = _run(pipe, None)
    one = _run(pipe, [face])
    assert plain.shape == one.shape == (9, TINY_NATIVE.height, TINY_NATIVE.width, 3)  # references are dropped
    assert not np.allclose(plain, one)  # the reference frame reaches the denoiser
    assert np.array_equal(one, _run(pipe, [face]))  # deterministic
    offloaded = load_pipeline(tiny_wan_dir, memory="group_offload")
    assert np.array_equal(one, _run(offloaded, [face]))
