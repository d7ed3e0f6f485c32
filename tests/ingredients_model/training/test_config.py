"""The shipped example configs are valid and carry the paper's settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import ingredients_model.training as training
from ingredients_model.training.config import Stage1Config, Stage2Config, load_config

CONFIGS = Path(training.__file__).parent / "configs"


def test_example_configs_load() -> None:
    prepare = load_config(CONFIGS / "prepare.yaml", "prepare")
    assert prepare.mask_threshold == -2.0 and prepare.masks == "sam" and prepare.model_dir.is_absolute()
    assert prepare.frame_stride == 2 and prepare.mask_coverage == 0.25
    stage1 = load_config(CONFIGS / "stage1.yaml", "stage1")
    stage2 = load_config(CONFIGS / "stage2.yaml", "stage2")
    mse = load_config(CONFIGS / "stage2_mse.yaml", "stage2")
    assert (stage1.learning_rate, stage1.max_steps, stage1.lr_scheduler) == (
        2e-5,
        3000,
        "cosine_with_restarts",
    )
    assert (stage2.learning_rate, stage2.max_steps, stage2.routing_loss) == (3e-5, 2000, "ce")
    assert mse.routing_loss == "mse"
    assert stage1.p_global_only == stage1.p_local_only == pytest.approx(1 / 3)
    assert stage2.model_dir == stage1.output_dir / "exported"
    assert stage1.train_batch_size * stage1.gradient_accumulation_steps * 8 == 64
    assert yaml.safe_load((CONFIGS / "accelerate_8gpu.yaml").read_text())["num_processes"] == 8


def test_defaults_are_the_papers() -> None:
    one = Stage1Config(model_dir="m", data_dir="d", output_dir="o")
    two = Stage2Config(model_dir="m", data_dir="d", output_dir="o")
    assert (one.learning_rate, one.max_steps, two.learning_rate, two.max_steps) == (2e-5, 3000, 3e-5, 2000)
    assert one.trainable_modules == ["local_facial_extractor", "perceiver_cross_attention"]
    assert two.trainable_modules == ["router"]
    assert one.p_global_only == one.p_local_only == pytest.approx(1 / 3)  # uniform among the three


def test_our_own_settings_are_marked_in_the_example_configs() -> None:
    """Every hyper-parameter the paper does not give is labelled "ours" where it is set."""
    ours = {
        "prepare.yaml": ["mask_coverage", "empty_mask_fallback", "min_track_fraction", "reference_draws"],
        "stage1.yaml": ["adam_beta1", "adam_beta2", "adam_epsilon", "weight_decay", "max_grad_norm",
                        "lr_warmup_steps", "lr_num_cycles", "lora", "noised_image_dropout"],
        "stage2.yaml": ["adam_beta1", "adam_beta2", "weight_decay", "max_grad_norm", "lr_warmup_steps",
                        "lora", "routing_loss_weight"],
    }  # fmt: skip
    for name, keys in ours.items():
        lines = {
            line.split(":")[0]: line for line in (CONFIGS / name).read_text().splitlines() if ":" in line
        }
        for key in keys:
            assert "# ours" in lines[key], f"{name}: {key} is not marked as ours"
