"""YAML configurations for `prepare`, `stage1` and `stage2`: every hyper-parameter, paper defaults.

Relative paths in a YAML file are resolved against the folder of that file.
Paper settings (Fei et al. 2025): 49 frames at 480x720 sampled at an interval of 2, a random reference frame
per sample, AdamW, lr 2e-5 (stage 1) / 3e-5 (stage 2), cosine with restarts, global batch 64 through gradient
accumulation, 3k (stage 1) / 2k (stage 2) steps, dropping regularisation uniform among global / local / both,
SAM mask threshold -2.0 on the mask logits. Every value the paper does not state is ours and marked
"ours" below (and in the example configs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ingredients_model import released
from ingredients_model.errors import IngredientsError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PrepareConfig(_Strict):
    """`prepare`: manifest of videos → cached samples (latents, text embeddings, identities, masks)."""

    manifest: Path  # JSONL: {"video": path, "caption": str, "id"?: str, "people"?: [...]} (see data.py)
    output_dir: Path
    model_dir: Path  # model folder (vae/, text_encoder/, tokenizer/, transformer/, face_encoder/)
    face_encoder_dir: Path | None = None  # when model_dir has no face_encoder/ (CogVideoX-5B-I2V)
    sam_dir: Path | None = None  # local transformers SamModel folder; required when masks == "sam"
    masks: Literal["sam", "box"] = "sam"  # "box": the paper's box-only ablation, no SAM
    mask_threshold: float = -2.0  # on SAM mask logits (paper)
    sam_batch_frames: int = 4  # frames per SAM forward
    empty_mask_fallback: bool = True  # ours: a person with an empty SAM mask in a frame gets their box there
    # ours: a latent token belongs to the person covering the largest fraction of its pixels (over its frames)
    # when that fraction is at least this; else it is background (ignored by the routing loss)
    mask_coverage: float = Field(0.25, gt=0, le=1)
    detector: Literal["auto", "insightface", "dlib"] = (
        "auto"  # auto: insightface if the folder has it, else dlib
    )
    link_threshold: float | None = (
        None  # min cosine similarity to link faces (None: 0.3 insightface, 0.9 dlib)
    )
    min_people: int = 2
    max_people: int = released.TRAINED_PEOPLE  # the released weights were trained with two people
    min_track_fraction: float = 0.5  # ours: a person must be detected in this fraction of sampled frames
    # the paper picks a random reference frame per sample; the face encoder does not run during training, so
    # this many random draws (one frame per person each) are encoded here and one is picked per step (ours)
    reference_draws: int = Field(4, ge=1)
    num_frames: int | None = None  # None: the transformer's sample_frames (49 released)
    height: int | None = None  # None: native size sample_height * 8 (480 released)
    width: int | None = None  # None: sample_width * 8 (720 released)
    frame_stride: int = Field(2, ge=1)  # the paper samples frames at an interval of 2
    # log-normal noise on the identity canvas before VAE encoding (CogVideoX I2V recipe), once per draw
    image_noise_mean: float = -3.0
    image_noise_std: float = 0.5
    max_sequence_length: int = 226
    device: str = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    seed: int = 0
    overwrite: bool = False

    @model_validator(mode="after")
    def _check(self) -> PrepareConfig:
        if self.masks == "sam" and self.sam_dir is None:
            raise ValueError(
                "masks: sam needs sam_dir (a local transformers SamModel folder), or use masks: box"
            )
        if self.min_people < 1 or self.max_people < self.min_people:
            raise ValueError("need 1 <= min_people <= max_people")
        return self


class LoraOptions(_Strict):
    rank: int = 128  # ours (CogVideoX LoRA recipe default)
    alpha: int = 128  # ours
    dropout: float = 0.0
    target_modules: list[str] = Field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    # LoRA goes only into the DiT blocks (not the face modules, which are trained in full or frozen)
    module_prefix: str = "transformer_blocks"


FACE_CONFIG_KEYS = (
    "LFE_id_dim",
    "LFE_vit_dim",
    "LFE_depth",
    "LFE_dim_head",
    "LFE_num_heads",
    "LFE_num_id_token",
    "LFE_num_querie",
    "LFE_ff_mult",
    "LFE_num_scale",
    "cross_attn_interval",
    "cross_attn_dim_head",
    "cross_attn_num_heads",
    "local_face_scale",
)
"""Transformer config keys that size the face modules (see IngredientsTransformer3DModel)."""


class TrainConfig(_Strict):
    """Options shared by both stages."""

    # stage 1: the base model folder: released Ingredients, ConsisID (face modules, no routers) or
    # CogVideoX-5B-I2V (no face modules); stage 2: the exported stage-1 folder
    model_dir: Path
    # a model folder whose transformer's facial extractor and perceiver cross-attentions start training
    # (e.g. ConsisID-preview when model_dir is CogVideoX-5B-I2V); default: model_dir's own, else new ones
    face_modules_from: Path | None = None
    face_encoder_dir: Path | None = None  # face_encoder/ when model_dir has none (CogVideoX-5B-I2V)
    # sizes of new face modules (transformer config keys above); default: the released architecture
    face_config: dict[str, int | float] = Field(default_factory=dict)
    data_dir: Path  # output_dir of `prepare`
    output_dir: Path  # checkpoints/, logs/, exported/
    seed: int = 42
    max_steps: int = 3000  # optimizer steps
    train_batch_size: int = 1  # per device
    gradient_accumulation_steps: int = 8  # paper batch 64 = 8 GPUs x 1 x 8
    learning_rate: float = 2e-5
    adam_beta1: float = 0.9  # ours
    adam_beta2: float = 0.95  # ours
    adam_epsilon: float = 1e-8  # ours
    weight_decay: float = 1e-4  # ours
    max_grad_norm: float = 1.0  # ours (gradient clipping)
    lr_scheduler: str = "cosine_with_restarts"
    lr_warmup_steps: int = 100  # ours
    lr_num_cycles: int = 1  # ours
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"
    gradient_checkpointing: bool = True
    trainable_modules: list[str] = Field(default_factory=list)  # name prefixes trained in full
    lora: LoraOptions | None = Field(default_factory=LoraOptions)  # ours: LoRA on the DiT
    noised_image_dropout: float = 0.05  # ours: zero the image latents (CogVideoX I2V recipe)
    checkpointing_steps: int = 250
    checkpoints_total_limit: int | None = 3
    resume_from_checkpoint: str | None = "latest"  # "latest", a path, or null to start fresh
    log_every: int = 1
    tensorboard: bool = True  # also write tensorboard events when tensorboard is installed
    dataloader_num_workers: int = 0
    export: bool = True  # write output_dir/exported (released layout, LoRA merged) at the end
    export_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"  # released weights are bf16
    max_steps_this_run: int | None = None  # stop early (still checkpointing); for preemptible jobs

    @model_validator(mode="after")
    def _check_face_config(self) -> TrainConfig:
        unknown = sorted(set(self.face_config) - set(FACE_CONFIG_KEYS))
        if unknown:
            raise ValueError(f"face_config: unknown keys {unknown}; use {', '.join(FACE_CONFIG_KEYS)}")
        return self


class Stage1Config(TrainConfig):
    """Stage 1 — facial embedding alignment: facial extractor + perceiver cross-attentions + DiT LoRA."""

    trainable_modules: list[str] = Field(
        default_factory=lambda: ["local_facial_extractor", "perceiver_cross_attention"]
    )
    # dropping regularisation: per sample, condition on global only (no identity tokens), local only
    # (image latents zeroed) or both, uniformly (paper)
    p_global_only: float = 1 / 3
    p_local_only: float = 1 / 3

    @model_validator(mode="after")
    def _check(self) -> Stage1Config:
        if self.p_global_only + self.p_local_only > 1:
            raise ValueError("p_global_only + p_local_only must be <= 1")
        return self


class Stage2Config(TrainConfig):
    """Stage 2 — router fine-tuning: routers + DiT LoRA, diffusion loss + λ·routing loss."""

    max_steps: int = 2000
    learning_rate: float = 3e-5
    trainable_modules: list[str] = Field(default_factory=lambda: ["router"])
    routing_loss_weight: float = 1.0  # λ, ours
    routing_loss: Literal["ce", "mse"] = "ce"  # "mse": the ablation
    diffusion_loss_weight: float = 1.0


def _resolve(data: dict, base: Path, keys: tuple[str, ...]) -> dict:
    for key in keys:
        if data.get(key) is not None and not Path(data[key]).expanduser().is_absolute():
            data[key] = str((base / Path(data[key]).expanduser()).resolve())
    return data


_PATH_KEYS = (
    "manifest",
    "output_dir",
    "model_dir",
    "sam_dir",
    "data_dir",
    "face_modules_from",
    "face_encoder_dir",
)
_KINDS = {"prepare": PrepareConfig, "stage1": Stage1Config, "stage2": Stage2Config}


def load_config(path: Path, kind: str) -> PrepareConfig | Stage1Config | Stage2Config:
    """Read a YAML config of `kind` ("prepare", "stage1", "stage2"); IngredientsError on any problem."""
    path = Path(path)
    if kind not in _KINDS:
        raise IngredientsError(f"unknown config kind {kind!r}", f"use one of {sorted(_KINDS)}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise IngredientsError(
            f"cannot read config {path}: {exc}", "check the path and the YAML syntax"
        ) from exc
    if not isinstance(data, dict):
        raise IngredientsError(
            f"{path}: expected a mapping of options", "see ingredients_model/training/configs/"
        )
    try:
        return _KINDS[kind].model_validate(_resolve(data, path.parent, _PATH_KEYS))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise IngredientsError(
            f"{path}: invalid {kind} config: {problems}", "fix the listed options"
        ) from exc
