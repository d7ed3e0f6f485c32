"""The shipped example configs are valid and carry the paper's settings."""

from __future__ import annotations

from pathlib import Path

import yaml

import ingredients_model.training as training
from ingredients_model.training.config import Stage1Config, Stage2Config, load_config

CONFIGS = Path(training.__file__).parent / "configs"


def test_example_configs_load() -> None:
    prepare = load_config(CONFIGS / "prepare.yaml", "prepare")
    assert prepare.mask_threshold == -2.0 and prepare.masks == "sam" and prepare.model_dir.is_absolute()
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
    assert stage2.model_dir == stage1.output_dir / "exported"
    assert stage1.train_batch_size * stage1.gradient_accumulation_steps * 8 == 64
    assert yaml.safe_load((CONFIGS / "accelerate_8gpu.yaml").read_text())["num_processes"] == 8


def test_defaults_are_the_papers() -> None:
    one = Stage1Config(model_dir="m", data_dir="d", output_dir="o")
    two = Stage2Config(model_dir="m", data_dir="d", output_dir="o")
    assert (one.learning_rate, one.max_steps, two.learning_rate, two.max_steps) == (2e-5, 3000, 3e-5, 2000)
    assert one.trainable_modules == ["local_facial_extractor", "perceiver_cross_attention"]
    assert two.trainable_modules == ["router"]
