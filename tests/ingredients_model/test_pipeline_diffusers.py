"""IngredientsPipeline as a diffusers citizen: ConsisIDPipeline's arguments, text and frame-count checks, the
optional text encoder, what model_index.json names, offloading and half precision on the CPU."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from ingredients_model.checkpoint import load_pipeline
from ingredients_model.errors import IngredientsError
from ingredients_model.faces import compose_identity_canvas
from ingredients_model.pipeline import IngredientsPipeline
from ingredients_model.tiny import TINY_SIZE, tiny_transformer_config
from ingredients_model.transformer import IngredientsTransformer3DModel

H, W, F = TINY_SIZE["height"], TINY_SIZE["width"], TINY_SIZE["frames"]
PROMPT = "two friends talk on a park bench under autumn trees"
OTHER = "a man walks along a city street at night"


def latents(pipe, people, seed: int | list[int] = 0, prompt=PROMPT, **kwargs) -> torch.Tensor:
    kwargs.setdefault("num_inference_steps", 2)
    kwargs.setdefault("output_type", "latent")
    if isinstance(seed, list):
        generator = [torch.Generator().manual_seed(s) for s in seed]
    else:
        generator = torch.Generator().manual_seed(seed)
    if prompt is not None:
        kwargs["prompt"] = prompt
    return pipe(identities=people, generator=generator, **kwargs).frames


def transformer_calls(pipe) -> tuple[list[dict], object]:
    calls: list[dict] = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True
    )
    return calls, handle


# ---------------------------------------------------------------- ConsisIDPipeline's arguments


@pytest.mark.slow
def test_num_videos_per_prompt_draws_one_noise_per_video_in_prompt_order(pipe, people):
    videos = latents(pipe, people[:2], seed=[1, 2, 3, 4], prompt=[PROMPT, OTHER], num_videos_per_prompt=2)
    assert videos.shape[0] == 4
    for index, (prompt, seed) in enumerate([(PROMPT, 1), (PROMPT, 2), (OTHER, 3), (OTHER, 4)]):
        alone = latents(pipe, people[:2], seed=seed, prompt=prompt)
        torch.testing.assert_close(videos[index : index + 1], alone, rtol=1e-4, atol=1e-5)
    frames = pipe(PROMPT, identities=people[:1], num_videos_per_prompt=3, num_inference_steps=1).frames
    assert frames.shape == (3, F, H, W, 3)
    assert (frames[0] != frames[1]).any()


def test_eta_reaches_the_scheduler_step(pipe, people, monkeypatch):
    """eta goes to the scheduler step: the released CogVideoX DPM scheduler ignores it, DDIM uses it."""
    from diffusers import DDIMScheduler

    seen = []
    dpm = latents(pipe, people[:2])
    torch.testing.assert_close(latents(pipe, people[:2], eta=1.0), dpm, rtol=0, atol=0)
    monkeypatch.setattr(pipe, "scheduler", DDIMScheduler.from_config(pipe.scheduler.config))
    step = pipe.scheduler.step

    @functools.wraps(step)  # keeps the signature the pipeline inspects for ``eta``
    def recording_step(*args, **kwargs):
        seen.append(kwargs.get("eta"))
        return step(*args, **kwargs)

    monkeypatch.setattr(pipe.scheduler, "step", recording_step)
    default = latents(pipe, people[:2])
    zero = latents(pipe, people[:2], eta=0.0)
    stochastic = latents(pipe, people[:2], eta=1.0)
    assert seen == [0.0] * 4 + [1.0] * 2
    torch.testing.assert_close(zero, default, rtol=0, atol=0)
    assert (stochastic - default).abs().max() > 1e-4


def test_dynamic_cfg_is_off_by_default_and_follows_cogvideox_schedule(pipe, people):
    scales = []

    def record(p, step, timestep, tensors):
        scales.append((int(timestep), p.guidance_scale))
        return tensors

    steps = 4
    default = latents(pipe, people[:2], num_inference_steps=steps, callback_on_step_end=record)
    assert [s for _, s in scales] == [6.0] * steps
    scales.clear()
    dynamic = latents(
        pipe, people[:2], num_inference_steps=steps, use_dynamic_cfg=True, callback_on_step_end=record
    )
    for t, scale in scales:
        expected = 1 + 6.0 * (1 - math.cos(math.pi * ((steps - t) / steps) ** 5.0)) / 2
        assert scale == pytest.approx(expected)
    assert (dynamic - default).abs().max() > 1e-4


def test_attention_kwargs_scale_lora_layers(tiny_model_dir, people):
    from peft import LoraConfig

    pipe = load_pipeline(tiny_model_dir, dtype=torch.float32, memory="none")
    pipe.set_progress_bar_config(disable=True)
    base = latents(pipe, people[:2])
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v"], init_lora_weights=False)
    pipe.transformer.add_adapter(config)
    calls, handle = transformer_calls(pipe)
    try:
        off = latents(pipe, people[:2], attention_kwargs={"scale": 0.0})
        on = latents(pipe, people[:2], attention_kwargs={"scale": 1.0})
    finally:
        handle.remove()
    assert all(call["attention_kwargs"] in ({"scale": 0.0}, {"scale": 1.0}) for call in calls)
    torch.testing.assert_close(off, base, rtol=1e-5, atol=1e-6)
    assert (on - base).abs().max() > 1e-4


# ---------------------------------------------------------------- prompt embeddings


def pipe_with(pipe, **transformer_changes) -> IngredientsPipeline:
    """The tiny pipeline's components around a transformer with a changed config (same seed)."""
    torch.manual_seed(0)
    transformer = IngredientsTransformer3DModel(**{**tiny_transformer_config(), **transformer_changes})
    other = IngredientsPipeline(
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder,
        vae=pipe.vae,
        transformer=transformer.eval(),
        scheduler=pipe.scheduler,
    )
    other.set_progress_bar_config(disable=True)
    return other


def test_given_embeddings_are_checked_not_max_sequence_length(pipe, people):
    short = pipe_with(pipe, max_text_seq_length=16)
    embeds, negative = short.encode_prompt(PROMPT, max_sequence_length=16)
    assert embeds.shape[1] == 16
    # precomputed 16-token embeddings run under the default max_sequence_length=226
    given = latents(short, people[:2], prompt=None, prompt_embeds=embeds, negative_prompt_embeds=negative)
    encoded = latents(short, people[:2], max_sequence_length=16)
    torch.testing.assert_close(given, encoded, rtol=0, atol=0)
    with pytest.raises(IngredientsError, match=r"max_sequence_length=226.*exactly 16") as info:
        latents(short, people[:2])  # prompt text is encoded with max_sequence_length
    assert "max_sequence_length=16" in info.value.hint
    long, long_negative = short.encode_prompt(PROMPT, max_sequence_length=20)
    with pytest.raises(IngredientsError, match=r"prompt_embeds holds 20 text tokens.*exactly 16"):
        latents(short, people[:2], prompt=None, prompt_embeds=long, negative_prompt_embeds=long_negative)
    with pytest.raises(IngredientsError, match="negative_prompt_embeds holds 20"):
        latents(short, people[:2], prompt=None, prompt_embeds=embeds, negative_prompt_embeds=long_negative)


def test_embeddings_of_the_wrong_width_or_rank(pipe, people):
    embeds, negative = pipe.encode_prompt(PROMPT)
    narrow = {"prompt_embeds": embeds[..., :16], "negative_prompt_embeds": negative[..., :16]}
    with pytest.raises(IngredientsError, match=r"prompt_embeds has shape \(1, 226, 16\), expected \[batch"):
        latents(pipe, people[:1], prompt=None, **narrow)
    with pytest.raises(IngredientsError, match=r"expected \[batch, tokens, 32\]"):
        latents(pipe, people[:1], prompt=None, prompt_embeds=embeds[0], negative_prompt_embeds=negative[0])


def test_rotary_only_transformers_take_any_text_length(pipe, people):
    free = pipe_with(pipe, use_learned_positional_embeddings=False)
    assert free.transformer.required_text_length is None
    embeds, negative = free.encode_prompt(PROMPT, max_sequence_length=20)
    out = latents(free, people[:2], prompt=None, prompt_embeds=embeds, negative_prompt_embeds=negative)
    assert torch.isfinite(out).all()
    assert latents(free, people[:2], max_sequence_length=20).shape == out.shape


# ---------------------------------------------------------------- frame counts


@pytest.mark.parametrize(
    ("requested", "rendered", "warnings"),
    [
        (None, F, []),
        (F, F, []),
        (8, 9, ["not 8*k + 1"]),  # rounded like diffusers' video pipelines: 8 // 8 * 8 + 1
        (12, 9, ["not 8*k + 1"]),
        (1, 1, ["differs from the 9 frames"]),
        (4, 1, ["not 8*k + 1", "differs from the 9 frames"]),
    ],
)
def test_frame_counts_are_rounded_and_warned_about(pipe, people, caplog, requested, rendered, warnings):
    with caplog.at_level(logging.WARNING, logger="ingredients_model.pipeline"):
        assert pipe.frame_count(requested) == rendered
        out = latents(pipe, people[:1], num_frames=requested, num_inference_steps=1)
    assert out.shape == (1, (rendered - 1) // 4 + 1, 4, H // 8, W // 8)
    messages = [r.getMessage() for r in caplog.records if r.name == "ingredients_model.pipeline"]
    assert len(messages) == 2 * len(warnings)  # frame_count() and the call
    for expected in warnings:
        assert any(expected in message for message in messages), messages


def test_no_frame_count_warning_without_learned_positional_embeddings(pipe, caplog):
    free = pipe_with(pipe, use_learned_positional_embeddings=False)
    with caplog.at_level(logging.WARNING, logger="ingredients_model.pipeline"):
        assert free.frame_count(1) == 1
    assert not caplog.records


# ---------------------------------------------------------------- the optional text encoder


@pytest.mark.slow
def test_save_and_load_without_the_text_encoder(pipe, people, tmp_path):
    embeds, negative = pipe.encode_prompt(PROMPT)
    expected = latents(pipe, people[:2], prompt=None, prompt_embeds=embeds, negative_prompt_embeds=negative)
    text_encoder = pipe.text_encoder
    pipe.free_text_encoder()
    try:
        pipe.save_pretrained(tmp_path / "saved")
    finally:
        pipe.register_modules(text_encoder=text_encoder)
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["text_encoder"] == [None, None]
    assert not (tmp_path / "saved" / "text_encoder").exists()
    loaded = IngredientsPipeline.from_pretrained(tmp_path / "saved")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.text_encoder is None
    got = latents(loaded, people[:2], prompt=None, prompt_embeds=embeds, negative_prompt_embeds=negative)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with pytest.raises(IngredientsError, match="has no text encoder") as info:
        latents(loaded, people[:2])
    assert "prompt_embeds" in info.value.hint
    with pytest.raises(IngredientsError, match="has no text encoder"):  # the negative prompt needs it too
        latents(loaded, people[:2], prompt=None, prompt_embeds=embeds)
    latents(loaded, people[:2], prompt=None, prompt_embeds=embeds, guidance_scale=1.0)  # no negative needed


# ---------------------------------------------------------------- model_index.json and diffusers' loader


def test_model_index_names_classes_diffusers_resolves(tiny_model_dir):
    index = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["_class_name"] == "ConsisIDPipeline"
    assert index["transformer"] == ["ingredients_model.transformer", "IngredientsTransformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLCogVideoX"]


def test_diffusion_pipeline_from_pretrained_runs_the_transformer_in_consisid(tiny_model_dir, pipe, people):
    """DiffusionPipeline resolves the folder to diffusers' ConsisIDPipeline around our transformer; its
    single-identity call equals ours with one person and per-branch guidance."""
    from diffusers import ConsisIDPipeline, DiffusionPipeline

    consisid = DiffusionPipeline.from_pretrained(tiny_model_dir)
    assert type(consisid) is ConsisIDPipeline
    assert isinstance(consisid.transformer, IngredientsTransformer3DModel)
    consisid.set_progress_bar_config(disable=True)
    person = people[0]
    image = compose_identity_canvas([person.aligned_face], width=W, height=H)
    theirs = consisid(
        image=image,
        prompt=PROMPT,
        height=H,  # ConsisIDPipeline defaults to 480x720 and 49 frames, not to the transformer's config
        width=W,
        num_frames=F,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        id_cond=person.id_cond[None],
        id_vit_hidden=[h[None] for h in person.id_vit_hidden],
    ).frames
    ours = latents(pipe, [person], image=image, cfg_routing="per_branch")
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-6)
    again = IngredientsPipeline.from_pipe(consisid)
    assert type(again) is IngredientsPipeline and again.transformer is consisid.transformer


@pytest.mark.slow
def test_diffusers_asks_for_the_import_instead_of_running_code(tiny_model_dir):
    code = (
        f"from diffusers import DiffusionPipeline; DiffusionPipeline.from_pretrained({str(tiny_model_dir)!r})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode != 0
    assert "import ingredients_model.transformer before calling `from_pretrained`" in result.stderr


def test_from_pretrained_prefers_transformer_ema(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    ema = IngredientsTransformer3DModel.from_pretrained(folder / "transformer")
    with torch.no_grad():
        for parameter in ema.parameters():
            parameter.add_(0.5)
    ema.save_pretrained(folder / "transformer_ema")
    loaded = IngredientsPipeline.from_pretrained(folder, dtype=torch.bfloat16)
    assert loaded.transformer.dtype == loaded.vae.dtype == torch.bfloat16
    assert torch.equal(loaded.transformer.proj_out.weight, ema.proj_out.weight.to(torch.bfloat16))


# ---------------------------------------------------------------- offloading and half precision on the CPU


@pytest.mark.parametrize("mode", ["model_cpu_offload", "group_leaf", "group_block"])
def test_diffusers_offloading_on_the_cpu_gives_the_same_latents(tiny_model_dir, pipe, people, mode):
    expected = latents(pipe, people[:2])
    offloaded = load_pipeline(tiny_model_dir, dtype=torch.float32, memory="none")
    offloaded.set_progress_bar_config(disable=True)
    cpu = torch.device("cpu")
    if mode == "model_cpu_offload":
        offloaded.enable_model_cpu_offload(device=cpu)
    elif mode == "group_leaf":
        offloaded.enable_group_offload(onload_device=cpu, offload_type="leaf_level")
    else:
        offloaded.transformer.enable_group_offload(
            onload_device=cpu, offload_type="block_level", num_blocks_per_group=1
        )
    torch.testing.assert_close(latents(offloaded, people[:2]), expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_pipeline_runs_on_the_cpu(tiny_model_dir, pipe, people, dtype):
    reference = latents(pipe, people[:2])
    half = load_pipeline(tiny_model_dir, dtype=dtype, memory="none")
    half.set_progress_bar_config(disable=True)
    out = latents(half, people[:2])
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert (out.float() - reference).abs().max() / reference.abs().max() < 0.1
