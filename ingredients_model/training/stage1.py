"""Stage 1 — facial embedding alignment: the facial extractor, the perceiver cross-attentions and a LoRA
on the DiT learn with the CogVideoX diffusion loss, with the dropping regularisation (per micro-batch:
global only = no identity tokens, local only = image latents zeroed, or both)."""

from __future__ import annotations

import torch

from ingredients_model.training.config import Stage1Config
from ingredients_model.training.loop import StepContext, TrainResult, train
from ingredients_model.training.model import diffusion_inputs, diffusion_loss


def choose_conditioning(config: Stage1Config, generator: torch.Generator) -> str:
    """ "global", "local" or "both" with the configured probabilities."""
    u = float(torch.rand((), generator=generator))
    if u < config.p_global_only:
        return "global"
    if u < config.p_global_only + config.p_local_only:
        return "local"
    return "both"


def stage1_loss(ctx: StepContext, batch: dict) -> dict[str, torch.Tensor]:
    config: Stage1Config = ctx.config  # type: ignore[assignment]
    mode = choose_conditioning(config, ctx.generator)
    model_input, noisy, latents, timesteps = diffusion_inputs(
        batch, ctx.scheduler, ctx.generator, config.noised_image_dropout, drop_image=mode == "local"
    )
    identity = (
        {} if mode == "global" else {"id_cond": batch["id_cond"], "id_vit_hidden": batch["id_vit_hidden"]}
    )
    output = ctx.transformer(
        hidden_states=model_input,
        encoder_hidden_states=batch["prompt_embeds"],
        timestep=timesteps,
        image_rotary_emb=ctx.rotary,
        return_dict=True,
        **identity,
    )
    loss = diffusion_loss(output.sample, noisy, latents, timesteps, ctx.scheduler)
    return {"loss": loss, "diffusion_loss": loss.detach()}


def run_stage1(config: Stage1Config) -> TrainResult:
    """Train stage 1 (see module docstring); checkpoints, logs and the export go to config.output_dir."""
    return train(config, stage1_loss, "stage1")
