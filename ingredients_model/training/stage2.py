"""Stage 2 — router fine-tuning: only the routers and a DiT LoRA learn; loss = diffusion loss
+ λ · routing loss against the per-person masks (cross-entropy as the paper, -1 ignored; or the
ablation's MSE between routing weights and one-hot masks)."""

from __future__ import annotations

import torch

from ingredients_model.training.config import Stage2Config
from ingredients_model.training.loop import StepContext, TrainResult, train
from ingredients_model.training.model import (
    capture_router_logits,
    diffusion_inputs,
    diffusion_loss,
    routing_mse,
)


def stage2_loss(ctx: StepContext, batch: dict) -> dict[str, torch.Tensor]:
    config: Stage2Config = ctx.config  # type: ignore[assignment]
    model_input, noisy, latents, timesteps = diffusion_inputs(
        batch, ctx.scheduler, ctx.generator, config.noised_image_dropout, drop_image=False
    )
    masks = batch["routing_mask"]
    with capture_router_logits(ctx.transformer) as logits:
        output = ctx.transformer(
            hidden_states=model_input,
            encoder_hidden_states=batch["prompt_embeds"],
            timestep=timesteps,
            image_rotary_emb=ctx.rotary,
            id_cond=batch["id_cond"],
            id_vit_hidden=batch["id_vit_hidden"],
            routing_masks=masks,
            return_dict=True,
        )
        block_logits = list(logits)
    ce = output.routing_loss
    routing = (
        ce if config.routing_loss == "ce" else routing_mse(block_logits, masks.reshape(masks.shape[0], -1))
    )
    diffusion = diffusion_loss(output.sample, noisy, latents, timesteps, ctx.scheduler)
    loss = config.diffusion_loss_weight * diffusion + config.routing_loss_weight * routing
    parts = {"loss": loss, "diffusion_loss": diffusion.detach(), "routing_loss": routing.detach()}
    if config.routing_loss == "mse":
        parts["routing_ce"] = ce.detach()
    return parts


def run_stage2(config: Stage2Config) -> TrainResult:
    """Train stage 2 (see module docstring); checkpoints, logs and the export go to config.output_dir."""
    return train(config, stage2_loss, "stage2")
