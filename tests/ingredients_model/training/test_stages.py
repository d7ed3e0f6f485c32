"""Stage 1 and stage 2 on the tiny model: what learns, what stays frozen, the routing loss falls,
and an interrupted + resumed run equals an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ingredients_model.training.stage1 import run_stage1
from ingredients_model.training.stage2 import run_stage2
from ingredients_model.training.start import load_start_transformer

from .conftest import train_config


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path / "trainable.safetensors")


def _base(config) -> dict[str, torch.Tensor]:
    """The weights training starts from."""
    return {k: v.clone() for k, v in load_start_transformer(config).state_dict().items()}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.slow
def test_stage2_routing_loss_falls_and_frozen_weights_stay(
    tmp_path: Path, tiny_model_dir: Path, prepared_dir: Path
) -> None:
    config = train_config(
        "stage2",
        tiny_model_dir,
        prepared_dir,
        tmp_path / "run",
        max_steps=40,
        learning_rate=1e-2,
        train_batch_size=2,
        routing_loss_weight=1.0,
        gradient_checkpointing=True,
    )
    base = _base(config)
    result = run_stage2(config)
    losses = [row["routing_loss"] for row in result.history]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"stage2 routing loss: first 5 steps {first:.4f} -> last 5 steps {last:.4f} ({last / first:.1%})")
    assert last < 0.5 * first
    logged = [
        json.loads(line) for line in (tmp_path / "run" / "logs" / "train.jsonl").read_text().splitlines()
    ]
    assert len(logged) == 40 and {"diffusion_loss", "routing_loss", "lr"} <= set(logged[0])

    trained = _weights(result.checkpoint)
    assert trained and all(k.startswith("router.") or "lora_" in k for k in trained)
    assert any(k.startswith("router.") for k in trained) and any("lora_" in k for k in trained)
    # in the trained model itself, every frozen weight is bit-identical; only routers (and LoRA) moved
    live = result.transformer.state_dict()
    after = {k.replace("base_layer.", ""): v for k, v in live.items() if "lora_" not in k}
    assert set(after) == set(base)
    changed = _changed(base, after)
    assert changed and all(k.startswith("router.") for k in changed)
    assert all(torch.equal(live[k], trained[k]) for k in trained)  # the checkpoint holds what was trained


@pytest.mark.slow
def test_stage2_mse_variant(tmp_path: Path, tiny_model_dir: Path, prepared_dir: Path) -> None:
    config = train_config(
        "stage2", tiny_model_dir, prepared_dir, tmp_path / "run", max_steps=3, routing_loss="mse", lora=None
    )
    result = run_stage2(config)
    row = result.history[-1]
    assert 0 < row["routing_loss"] <= 2 and row["routing_ce"] > 0
    assert all(k.startswith("router.") for k in _weights(result.checkpoint))


def test_stage1_updates_only_face_modules_and_lora(
    tmp_path: Path, tiny_model_dir: Path, prepared_dir: Path
) -> None:
    config = train_config(
        "stage1",
        tiny_model_dir,
        prepared_dir,
        tmp_path / "run",
        max_steps=4,
        learning_rate=1e-3,
        p_global_only=0.0,
        p_local_only=0.0,
    )
    result = run_stage1(config)
    trained = _weights(result.checkpoint)
    prefixes = ("local_facial_extractor.", "perceiver_cross_attention.")
    assert all(
        k.startswith(prefixes) or ("lora_" in k and k.startswith("transformer_blocks.")) for k in trained
    )
    assert any(k.startswith(prefixes[0]) for k in trained) and any(k.startswith(prefixes[1]) for k in trained)
    base = _base(config)
    changed = {k for k in trained if k in base and not torch.equal(base[k], trained[k])}
    assert any(k.startswith(prefixes[0]) for k in changed) and any(k.startswith(prefixes[1]) for k in changed)
    lora_b = [v for k, v in trained.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # LoRA B starts at zero: it learned
    assert not any(k.startswith("router.") for k in trained)
    assert result.history[-1]["diffusion_loss"] > 0
    live = {
        k.replace("base_layer.", ""): v
        for k, v in result.transformer.state_dict().items()
        if "lora_" not in k
    }
    moved = _changed(base, live)
    assert moved and all(k.startswith(prefixes) for k in moved)  # the DiT and the routers are untouched


def test_dropping_is_uniform_among_global_local_and_both() -> None:
    from collections import Counter

    from ingredients_model.training.config import Stage1Config
    from ingredients_model.training.stage1 import choose_conditioning

    config = Stage1Config(model_dir="m", data_dir="d", output_dir="o")
    generator = torch.Generator().manual_seed(0)
    counts = Counter(choose_conditioning(config, generator) for _ in range(3000))
    assert set(counts) == {"global", "local", "both"}
    assert all(abs(n / 3000 - 1 / 3) < 0.03 for n in counts.values())


def test_latent_samples_are_drawn_per_step() -> None:
    from ingredients_model.training.model import sample_latents

    mean, std = torch.full((1, 3, 4, 8, 12), 2.0), torch.full((1, 3, 4, 8, 12), 0.5)
    batch = {
        "latents_mean": mean,
        "latents_std": std,
        "image_latents_mean": mean[:, :1],
        "image_latents_std": std[:, :1],
    }
    first, image = sample_latents(batch, torch.Generator().manual_seed(1))
    second, _ = sample_latents(batch, torch.Generator().manual_seed(2))
    assert first.shape == mean.shape and image.shape == (1, 1, 4, 8, 12)
    assert not torch.equal(first, second)  # a new VAE latent sample every step
    assert abs(float(first.mean()) - 2.0) < 0.05 and abs(float(first.std()) - 0.5) < 0.05
    again, _ = sample_latents(batch, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)  # and the same one when the step is repeated (resume)


def test_stage1_dropping_global_only_leaves_the_face_modules_alone(
    tmp_path: Path, tiny_model_dir: Path, prepared_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = train_config(
        "stage1",
        tiny_model_dir,
        prepared_dir,
        tmp_path / "run",
        max_steps=2,
        learning_rate=1e-3,
        p_global_only=1.0,
        p_local_only=0.0,
    )
    trained = _weights(run_stage1(config).checkpoint)
    base = _base(config)
    face = [k for k in trained if "lora_" not in k]
    assert face and all(torch.equal(trained[k], base[k]) for k in face)  # no identity tokens → no gradient
    assert any(v.abs().sum() > 0 for k, v in trained.items() if "lora_B" in k)
    progress = capfd.readouterr().err  # the console progress bar: step, loss, lr and the time left
    assert "stage1: 100%" in progress and "2/2" in progress and "loss=" in progress and "lr=" in progress
    assert "<00:00" in progress


@pytest.mark.slow
def test_resume_equals_uninterrupted(tmp_path: Path, tiny_model_dir: Path, prepared_dir: Path) -> None:
    common = dict(
        max_steps=6,
        learning_rate=1e-3,
        gradient_accumulation_steps=2,
        p_global_only=0.3,
        p_local_only=0.3,
        lr_scheduler="cosine_with_restarts",
        lr_warmup_steps=2,
        checkpointing_steps=2,
        checkpoints_total_limit=2,
    )
    whole = run_stage1(train_config("stage1", tiny_model_dir, prepared_dir, tmp_path / "a", **common))
    split = train_config(
        "stage1", tiny_model_dir, prepared_dir, tmp_path / "b", max_steps_this_run=3, **common
    )
    first = run_stage1(split)
    assert first.step == 3 and first.checkpoint.name == "checkpoint-3"
    second = run_stage1(split.model_copy(update={"max_steps_this_run": None}))
    assert second.step == 6
    a, b = _weights(whole.checkpoint), _weights(second.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in whole.history[3:]] == [r["loss"] for r in second.history]
    logged = (tmp_path / "b" / "logs" / "train.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logged] == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == [
        "checkpoint-4",
        "checkpoint-6",
    ]
    # a resumed run that is already finished does nothing more
    finished = run_stage1(split)
    assert finished.step == 6 and finished.history == []
    again = _weights(finished.checkpoint)
    assert all(torch.equal(again[k], b[k]) for k in b)
