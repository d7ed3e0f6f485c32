"""export: trained weights → released layout with the LoRA merged; load_pipeline loads it and its
transformer computes what the trained (unmerged) model computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ingredients_model.training.__main__ import main
from ingredients_model.training.data import PreparedDataset, collate
from ingredients_model.training.model import load_trainable_state, load_transformer, setup_trainable
from ingredients_model.training.stage2 import run_stage2

from .conftest import train_config


@pytest.mark.slow
def test_exported_folder_loads_in_the_pipeline(
    tmp_path: Path, tiny_model_dir: Path, prepared_dir: Path
) -> None:
    from ingredients_model.checkpoint import load_pipeline

    config = train_config(
        "stage2", tiny_model_dir, prepared_dir, tmp_path / "run", max_steps=3, learning_rate=1e-2, export=True
    )
    result = run_stage2(config)
    exported = result.exported
    assert exported == tmp_path / "run" / "exported" and not (tmp_path / "run" / "exported.partial").exists()
    assert {p.name for p in exported.iterdir()} >= {p.name for p in tiny_model_dir.iterdir()}
    assert json.loads((exported / "training.json").read_text())["checkpoint"].endswith("checkpoint-3")

    # the exported transformer equals the trained model with its LoRA applied
    trained = load_transformer(tiny_model_dir)
    setup_trainable(trained, config)
    load_trainable_state(trained, load_file(result.checkpoint / "trainable.safetensors"))
    merged = load_transformer(exported)
    assert not any("lora" in k for k in merged.state_dict())
    batch = collate([PreparedDataset(prepared_dir)[0]])
    latents, image = batch["latents_mean"], batch["image_latents_mean"]
    image = torch.cat([image, torch.zeros_like(latents[:, 1:])], dim=1)
    inputs = dict(
        hidden_states=torch.cat([latents, image], dim=2),
        encoder_hidden_states=batch["prompt_embeds"],
        timestep=torch.tensor([500]),
        id_cond=batch["id_cond"],
        id_vit_hidden=batch["id_vit_hidden"],
    )
    from ingredients_model.training.model import rotary_embeddings

    rotary = rotary_embeddings(merged.config, 3, 4, 6, "cpu")
    with torch.no_grad():
        want = trained.eval()(**inputs, image_rotary_emb=rotary).sample
        got = merged(**inputs, image_rotary_emb=rotary).sample
        base = load_transformer(tiny_model_dir)(**inputs, image_rotary_emb=rotary).sample
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-5)  # training changed the model

    pipe = load_pipeline(exported, device="cpu", dtype=torch.float32)
    frames = pipe(
        "two friends talk on a park bench",
        id_cond=batch["id_cond"],
        id_vit_hidden=batch["id_vit_hidden"],
        image=_canvas(prepared_dir),
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert frames.shape[-3:] == (64, 96, 3) and frames.shape[1] == 9

    # the CLI re-exports the latest checkpoint (in export_dtype) from the same YAML config
    yaml_file = tmp_path / "stage2.yaml"
    yaml_file.write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    assert (
        main(["export", "--stage", "stage2", "--config", str(yaml_file), "--out", str(tmp_path / "cli")]) == 0
    )
    again = load_transformer(tmp_path / "cli")
    assert all(torch.equal(v, merged.state_dict()[k]) for k, v in again.state_dict().items())


def _canvas(prepared_dir: Path):
    from PIL import Image

    from ingredients_model.faces import compose_identity_canvas

    faces = [Image.open(prepared_dir / "clips" / "clip0" / f"person{k}.png") for k in range(2)]
    return compose_identity_canvas(faces, 96, 64)


def test_data_for_another_model_is_refused(tmp_path: Path, tiny_model_dir: Path, prepared_dir: Path) -> None:
    from ingredients_model.errors import IngredientsError
    from ingredients_model.training.loop import check_data_fits

    config = train_config("stage2", tiny_model_dir, prepared_dir, tmp_path)
    sample = PreparedDataset(prepared_dir)[0]
    model_config = load_transformer(tiny_model_dir).config
    check_data_fits(sample, model_config, config)
    sample["latents_mean"] = sample["latents_mean"][:, :, :6]
    with pytest.raises(IngredientsError, match="native grid is 8x12"):
        check_data_fits(sample, model_config, config)


def test_cli_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "stage2.yaml"
    config.write_text("model_dir: nowhere\ndata_dir: data\noutput_dir: out\nrouting_loss: l1\n")
    assert main(["stage2", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "routing_loss" in err and "hint:" in err
    config.write_text("model_dir: nowhere\ndata_dir: data\noutput_dir: out\n")
    assert main(["stage2", "--config", str(config)]) == 1
    assert "no prepared data" in capsys.readouterr().err
    assert main(["export", "--config", str(config)]) == 1
    assert "--stage" in capsys.readouterr().err
