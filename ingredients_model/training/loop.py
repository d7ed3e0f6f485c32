"""The accelerate training loop shared by both stages: mixed precision, gradient checkpointing and
accumulation, checkpoints with exact resume (trainable weights, optimizer, scheduler, RNG, step, data
position), JSONL (+ tensorboard) logging of every loss, a progress bar on the console (step, loss, lr, ETA;
main process only), launch checks (:mod:`ingredients_model.training.launch`), and export at the end.

Checkpoints: `<output_dir>/checkpoints/checkpoint-<step>/` (accelerate `save_state`; the model part holds
only the trainable parameters, `trainable.safetensors`). Log: `<output_dir>/logs/train.jsonl`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ingredients_model.errors import IngredientsError
from ingredients_model.training.config import TrainConfig
from ingredients_model.training.data import PreparedDataset, ResumableSampler, collate
from ingredients_model.training.model import (
    TRAINABLE_FILE,
    load_trainable_state,
    rotary_embeddings,
    setup_trainable,
    trainable_state,
    weight_dtype,
)

log = logging.getLogger(__name__)

LossFn = Callable[["StepContext", dict], dict[str, torch.Tensor]]


class TrainState:
    """The optimizer-step counter (checkpointed by accelerate; the same on every process)."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


def micro_step_seed(seed: int, process: int, micro_step: int) -> int:
    """Seed of the generator behind one micro-batch's noise, timesteps and dropping: a function of the
    position only, so a resumed run draws exactly what an uninterrupted one would, on every process."""
    return int(np.random.SeedSequence([seed, process, micro_step]).generate_state(1, np.uint64)[0] >> 1)


@dataclass
class StepContext:
    """What a stage's loss function gets besides the batch."""

    transformer: torch.nn.Module
    scheduler: object
    config: TrainConfig
    generator: torch.Generator
    rotary: tuple | None
    extras: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    step: int
    checkpoint: Path | None
    exported: Path | None
    history: list[dict]  # one row per optimizer step of this run (as logged)
    transformer: torch.nn.Module  # the trained model (with its LoRA layers), for in-process evaluation


def check_data_fits(sample: dict, model_config, config: TrainConfig) -> None:
    """IngredientsError when the prepared data was made for another model (size, channels, face encoder)."""
    frames, channels, height, width = sample["latents_mean"].shape
    max_frames = (model_config.sample_frames - 1) // model_config.temporal_compression_ratio + 1
    problems = []
    if 2 * channels != model_config.in_channels:
        problems.append(f"{channels} latent channels, the transformer takes {model_config.in_channels // 2}")
    if model_config.use_learned_positional_embeddings and (height, width) != (
        model_config.sample_height,
        model_config.sample_width,
    ):
        problems.append(
            f"latents {height}x{width}, the transformer's native grid is "
            f"{model_config.sample_height}x{model_config.sample_width}"
        )
    if frames > max_frames:
        problems.append(f"{frames} latent frames, the transformer takes at most {max_frames}")
    if sample["id_cond"][0].shape[-1] != model_config.LFE_id_dim:
        problems.append(
            f"id_cond of {sample['id_cond'][0].shape[-1]}, the transformer takes {model_config.LFE_id_dim}"
        )
    if problems:
        raise IngredientsError(
            f"the data in {config.data_dir} does not fit the model in {config.model_dir}: "
            + "; ".join(problems),
            "run prepare with model_dir set to this model's folder (or its base model)",
        )


def _to_device(batch: dict, device: torch.device, dtype: torch.dtype) -> dict:
    def move(x):
        if isinstance(x, torch.Tensor):
            return x.to(device, dtype) if x.is_floating_point() else x.to(device)
        if isinstance(x, list):
            return [move(v) for v in x]
        return x

    return {k: move(v) for k, v in batch.items()}


def _checkpoints(folder: Path) -> list[Path]:
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def latest_checkpoint(folder: Path) -> Path:
    """The checkpoint-<step> folder with the highest step; IngredientsError when there is none."""
    found = _checkpoints(folder)
    if not found:
        raise IngredientsError(
            f"no checkpoint-<step> folder in {folder}", "train first, or pass --checkpoint"
        )
    return found[-1]


def _resume_path(config: TrainConfig, ckpt_dir: Path) -> Path | None:
    choice = config.resume_from_checkpoint
    if choice is None:
        return None
    if choice == "latest":
        found = _checkpoints(ckpt_dir)
        return found[-1] if found else None
    path = Path(choice)
    if not path.is_dir():
        raise IngredientsError(
            f"resume_from_checkpoint: {path} does not exist", "use 'latest', a checkpoint folder or null"
        )
    return path


class JsonlLogger:
    """Appends one JSON line per optimizer step; on resume, drops lines past the resumed step."""

    def __init__(self, path: Path, resumed_step: int, tensorboard_dir: Path | None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            keep = [
                line
                for line in path.read_text().splitlines()
                if line and json.loads(line)["step"] <= resumed_step
            ]
            path.write_text("".join(line + "\n" for line in keep))
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(tensorboard_dir))
            except ImportError:
                log.info("tensorboard is not installed; logging to %s only", path)

    def log(self, row: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, float):
                    self.writer.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train(config: TrainConfig, loss_fn: LossFn, stage: str) -> TrainResult:
    """Run one stage with `loss_fn` (returns a dict with "loss" plus the parts to log)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed, tqdm
    from diffusers import CogVideoXDPMScheduler
    from diffusers.optimization import get_scheduler

    from ingredients_model.training.launch import process_state
    from ingredients_model.training.start import load_start_transformer

    process_state()  # stops on a launch that would not train as asked
    out = config.output_dir
    ckpt_dir = out / "checkpoints"
    dataset = PreparedDataset(config.data_dir)
    transformer = load_start_transformer(config, weight_dtype(config))
    check_data_fits(dataset[0], transformer.config, config)
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        # dropping regularisation leaves the face modules unused in some steps
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(config.seed)
    dtype = weight_dtype(config)
    trainable_names = setup_trainable(transformer, config)
    scheduler = CogVideoXDPMScheduler.from_pretrained(config.model_dir / "scheduler")

    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_epsilon,
        weight_decay=config.weight_decay,
    )
    lr_scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=config.max_steps * accelerator.num_processes,
        num_cycles=config.lr_num_cycles,
    )
    state = TrainState()

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            save_file(
                trainable_state(accelerator.unwrap_model(models[0])), str(Path(output_dir) / TRAINABLE_FILE)
            )
        weights.clear()

    def load_hook(models, input_dir):
        model = models.pop()
        load_trainable_state(
            accelerator.unwrap_model(model), load_file(str(Path(input_dir) / TRAINABLE_FILE))
        )

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)
    accelerator.register_for_checkpointing(state)
    transformer, optimizer, lr_scheduler = accelerator.prepare(transformer, optimizer, lr_scheduler)

    resume = _resume_path(config, ckpt_dir)
    if resume is not None:
        accelerator.load_state(str(resume))
        log.info("resumed from %s at step %d", resume, state.step)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stage}_config.json").write_text(config.model_dump_json(indent=2) + "\n")
    logger = (
        JsonlLogger(
            out / "logs" / "train.jsonl",
            state.step,
            out / "logs" / "tensorboard" if config.tensorboard else None,
        )
        if accelerator.is_main_process
        else None
    )

    accum = config.gradient_accumulation_steps
    sampler = ResumableSampler(
        len(dataset),
        config.seed,
        accelerator.process_index,
        accelerator.num_processes,
        start=state.step * accum * config.train_batch_size,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.train_batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=config.dataloader_num_workers,
    )
    unwrapped = accelerator.unwrap_model(transformer)
    first = dataset[0]["latents_mean"]
    p = unwrapped.config.patch_size
    rotary = rotary_embeddings(
        unwrapped.config, first.shape[0], first.shape[2] // p, first.shape[3] // p, accelerator.device
    )
    ctx = StepContext(transformer, scheduler, config, torch.Generator(), rotary)

    log.info(
        "%s: %d trainable tensors (%d parameters), %d clips, %d process(es), global batch %d, from step %d",
        stage,
        len(trainable_names),
        sum(p.numel() for p in params),
        len(dataset),
        accelerator.num_processes,
        config.train_batch_size * accum * accelerator.num_processes,
        state.step,
    )
    stop = config.max_steps
    if config.max_steps_this_run is not None:
        stop = min(stop, state.step + config.max_steps_this_run)
    history: list[dict] = []
    sums: dict[str, float] = {}
    micro = 0
    started = time.perf_counter()
    progress = tqdm(
        total=stop, initial=state.step, desc=stage, unit="step", dynamic_ncols=True, main_process_only=True
    )
    transformer.train()
    batches = iter(loader)
    while state.step < stop:
        batch = _to_device(next(batches), accelerator.device, dtype)
        ctx.generator.manual_seed(
            micro_step_seed(config.seed, accelerator.process_index, state.step * accum + micro)
        )
        with accelerator.accumulate(transformer):
            losses = loss_fn(ctx, batch)
            accelerator.backward(losses["loss"])
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        micro += 1
        if not accelerator.sync_gradients:
            continue
        state.step += 1
        means = _mean_over_processes(accelerator, {k: v / micro for k, v in sums.items()})
        sums, micro = {}, 0
        row = {
            "step": state.step,
            **means,
            "lr": lr_scheduler.get_last_lr()[0],
            "seconds": round(time.perf_counter() - started, 3),
        }
        history.append(row)
        progress.update(1)
        progress.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", refresh=False)
        if logger is not None and (state.step % config.log_every == 0 or state.step == stop):
            logger.log(row)
        if state.step % config.checkpointing_steps == 0 or state.step == stop:
            _save_checkpoint(accelerator, config, ckpt_dir, state.step)

    progress.close()
    accelerator.wait_for_everyone()
    if logger is not None:
        logger.close()
    checkpoint = ckpt_dir / f"checkpoint-{state.step}"
    exported = None
    if config.export and state.step >= config.max_steps and accelerator.is_main_process:
        from ingredients_model.training.export import export_model

        exported = export_model(
            config, checkpoint, out / "exported", config.export_dtype, trainable_names=trainable_names
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(
        state.step,
        checkpoint if checkpoint.is_dir() else None,
        exported,
        history,
        accelerator.unwrap_model(transformer),
    )


def _mean_over_processes(accelerator, values: dict[str, float]) -> dict[str, float]:
    """Average each logged value over the processes (every process logs the same keys)."""
    tensor = torch.tensor(list(values.values()), device=accelerator.device)
    return dict(zip(values, accelerator.reduce(tensor, reduction="mean").tolist(), strict=True))


def _save_checkpoint(accelerator, config: TrainConfig, ckpt_dir: Path, step: int) -> None:
    """save_state into checkpoint-<step>.partial, rename it, then drop the oldest beyond the limit."""
    target = ckpt_dir / f"checkpoint-{step}"
    partial = ckpt_dir / f"checkpoint-{step}.partial"
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
        limit = config.checkpoints_total_limit
        if limit is not None:
            found = _checkpoints(ckpt_dir)
            for stale in found[: max(0, len(found) - limit)]:
                shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    log.info("saved %s", target)
