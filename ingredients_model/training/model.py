"""Building the transformer for training: which parameters learn (full modules + a DiT LoRA), and the
diffusion loss of the CogVideoX training recipe (v-prediction, `add_noise`, `get_velocity`, SNR weights)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from ingredients_model.errors import IngredientsError
from ingredients_model.training.config import LoraOptions, TrainConfig

_WEIGHT_DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

TRAINABLE_FILE = "trainable.safetensors"
"""The trainable weights inside a ``checkpoint-<step>`` folder (see :func:`trainable_state`)."""


def weight_dtype(config: TrainConfig) -> torch.dtype:
    """dtype of the frozen weights (trainable ones stay float32)."""
    return _WEIGHT_DTYPES[config.mixed_precision]


def lora_config(options: LoraOptions):
    """peft LoraConfig restricted to the DiT blocks (regex on module names)."""
    from peft import LoraConfig

    targets = "|".join(re.escape(t) for t in options.target_modules)
    return LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        init_lora_weights=True,
        target_modules=rf"^{re.escape(options.module_prefix)}\.\d+\.(.*\.)?({targets})$",
    )


def load_transformer(model_dir: Path, dtype: torch.dtype = torch.float32):
    """The Ingredients transformer of a complete model folder (strict: every tensor must be there). Training
    builds its starting point with :func:`ingredients_model.training.start.load_start_transformer`."""
    from ingredients_model.transformer import IngredientsTransformer3DModel

    folder = Path(model_dir) / "transformer"
    if not (folder / "config.json").is_file():
        raise IngredientsError(f"no transformer in {folder}", "point model_dir at a complete model folder")
    return IngredientsTransformer3DModel.from_pretrained(folder, torch_dtype=dtype)


def setup_trainable(transformer, config: TrainConfig) -> list[str]:
    """Freeze everything, add the LoRA, unfreeze `trainable_modules`; trainable params → float32.

    Returns the names of the trainable parameters (sorted)."""
    transformer.requires_grad_(False)
    if config.lora is not None:
        transformer.add_adapter(lora_config(config.lora))
    names = dict(transformer.named_parameters())
    for prefix in config.trainable_modules:
        hits = [n for n in names if (n == prefix or n.startswith(prefix + ".")) and "lora_" not in n]
        if not hits:
            raise IngredientsError(
                f"trainable_modules: {prefix!r} matches no parameter of the transformer",
                "use top-level names such as local_facial_extractor, perceiver_cross_attention, router",
            )
        for n in hits:
            names[n].requires_grad_(True)
    trainable = sorted(n for n, p in names.items() if p.requires_grad)
    if not trainable:
        raise IngredientsError("nothing to train", "set trainable_modules and/or lora in the config")
    for n in trainable:
        names[n].data = names[n].data.float()
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return trainable


def trainable_state(transformer) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (detached, on CPU, contiguous)."""
    return {n: p.detach().cpu().contiguous() for n, p in transformer.named_parameters() if p.requires_grad}


def load_trainable_state(transformer, state: dict[str, torch.Tensor]) -> None:
    """Load a `trainable_state` into an identically set-up transformer; every key must match."""
    params = dict(transformer.named_parameters())
    wanted = {n for n, p in params.items() if p.requires_grad}
    if set(state) != wanted:
        missing, extra = sorted(wanted - set(state)), sorted(set(state) - wanted)
        raise IngredientsError(
            f"checkpoint does not match the training setup (missing {missing[:3]}, unexpected {extra[:3]})",
            "resume with the same config (trainable_modules, lora) the checkpoint was written with",
        )
    with torch.no_grad():
        for n, tensor in state.items():
            params[n].copy_(tensor)


def rotary_embeddings(
    transformer_config, frames: int, grid_height: int, grid_width: int, device
) -> tuple | None:
    """CogVideoX 3D rotary embeddings for a latent grid of `frames` x (grid_height x grid_width) patches."""
    if not transformer_config.use_rotary_positional_embeddings:
        return None
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    p = transformer_config.patch_size
    crops = get_resize_crop_region_for_grid(
        (grid_height, grid_width), transformer_config.sample_width // p, transformer_config.sample_height // p
    )
    return get_3d_rotary_pos_embed(
        embed_dim=transformer_config.attention_head_dim,
        crops_coords=crops,
        grid_size=(grid_height, grid_width),
        temporal_size=frames,
        device=device,
    )


def sample_latents(batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw this step's VAE latent samples ``mean + std · ε`` of the video [B, F, C, h, w] and of the
    identity canvas [B, 1, C, h, w] from the cached distributions."""

    def draw(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        eps = torch.randn(mean.shape, generator=generator).to(mean.device, mean.dtype)
        return mean + std * eps

    return (
        draw(batch["latents_mean"], batch["latents_std"]),
        draw(batch["image_latents_mean"], batch["image_latents_std"]),
    )


def diffusion_inputs(
    batch: dict, scheduler, generator: torch.Generator, image_dropout: float, drop_image: bool
):
    """Draw the latents, noise them at random timesteps; returns (model_input, noisy, latents, timesteps).
    Every random draw of the step comes from ``generator`` (seeded by the step's position)."""
    latents, image = sample_latents(batch, generator)
    b = latents.shape[0]
    keep = (torch.rand(b, generator=generator) >= image_dropout).to(image.dtype)
    if drop_image:
        keep = torch.zeros_like(keep)
    image = image * keep.to(image.device)[:, None, None, None, None]
    padding = image.new_zeros((b, latents.shape[1] - 1, *latents.shape[2:]))
    image = torch.cat([image, padding], dim=1)
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator).to(
        latents.device
    )
    noisy = scheduler.add_noise(latents, noise, timesteps)
    return torch.cat([noisy, image], dim=2), noisy, latents, timesteps


def diffusion_loss(model_output, noisy, latents, timesteps, scheduler) -> torch.Tensor:
    """CogVideoX LoRA-script loss: x0 from the v-prediction, MSE weighted by 1 / (1 - alpha_bar_t)."""
    pred = scheduler.get_velocity(model_output.float(), noisy.float(), timesteps)
    alphas = scheduler.alphas_cumprod.to(pred.device)[timesteps].float()
    weights = (1 / (1 - alphas)).reshape(-1, *([1] * (pred.dim() - 1)))
    return (weights * (pred - latents.float()) ** 2).reshape(pred.shape[0], -1).mean(dim=1).mean()


@contextlib.contextmanager
def capture_router_logits(transformer) -> Iterator[list[torch.Tensor]]:
    """Collect every router's logits [B, L, N] computed inside the block (in call order; gradient
    checkpointing re-runs them during backward, so read the list before calling backward)."""
    captured: list[torch.Tensor] = []
    routers = list(getattr(getattr(transformer, "module", transformer), "router", []))
    originals = [r.logits for r in routers]

    def wrap(fn):
        def logits(*args, **kwargs):
            out = fn(*args, **kwargs)
            captured.append(out)
            return out

        return logits

    for router, fn in zip(routers, originals, strict=True):
        router.logits = wrap(fn)
    try:
        yield captured
    finally:
        for router in routers:
            del router.logits


def routing_mse(block_logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """The ablation's routing loss: MSE between softmax routing weights and one-hot person masks,
    over labelled tokens (targets [B, L], -1 ignored), averaged over blocks."""
    labelled = targets >= 0
    if not block_logits:
        raise IngredientsError("no router produced logits", "stage 2 needs clips with identities")
    onehot = F.one_hot(targets.clamp(min=0), block_logits[0].shape[-1]).float()
    losses = []
    for logits in block_logits:
        err = ((logits.float().softmax(-1) - onehot) ** 2).sum(-1)
        losses.append((err * labelled).sum() / labelled.sum().clamp(min=1))
    return torch.stack(losses).mean()
