"""IngredientsPipeline on the tiny random model folder: shapes, determinism, identity-once, cache, outputs."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from ingredients_model.checkpoint import load_pipeline
from ingredients_model.errors import IngredientsError
from ingredients_model.tiny import TINY_SIZE

H, W, F = TINY_SIZE["height"], TINY_SIZE["width"], TINY_SIZE["frames"]
PROMPT = "two friends talk on a park bench under autumn trees"


def run(pipe, people, seed: int = 0, **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    return pipe(PROMPT, identities=people, generator=torch.Generator().manual_seed(seed), **kwargs).frames


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_frames_for_n_people(pipe, people, n):
    frames = run(pipe, people[:n])
    assert isinstance(frames, np.ndarray)
    assert frames.shape == (1, F, H, W, 3)
    assert np.isfinite(frames).all() and frames.min() >= 0.0 and frames.max() <= 1.0
    assert frames.std() > 0


def test_same_seed_same_frames_other_seed_differs(pipe, people):
    a = run(pipe, people[:2], seed=7)
    b = run(pipe, people[:2], seed=7)
    c = run(pipe, people[:2], seed=8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_people_change_the_video(pipe, people):
    a = run(pipe, people[:2], output_type="latent")
    b = run(pipe, people[1:3], output_type="latent")
    assert (a - b).abs().max() > 1e-4


def test_identity_encoded_once_and_shared_by_every_step_and_both_guidance_halves(pipe, people, monkeypatch):
    encoded, calls = [], []
    original = pipe.transformer.encode_identities

    def counting(*args, **kwargs):
        features = original(*args, **kwargs)
        encoded.append(features)
        return features

    def record(module, args, kwargs):
        calls.append(kwargs)

    monkeypatch.setattr(pipe.transformer, "encode_identities", counting)
    handle = pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        run(pipe, people[:3], num_inference_steps=3, output_type="latent")
    finally:
        handle.remove()
    assert len(encoded) == 1
    assert encoded[0].num_people == 3 and encoded[0].batch_size == 1
    assert len(calls) == 3
    for kwargs in calls:
        assert kwargs["identity"] is encoded[0]
        assert kwargs.get("id_cond") is None and kwargs.get("id_vit_hidden") is None
        assert kwargs["hidden_states"].shape[0] == 2  # [unconditional, conditional] in one batch


def test_no_guidance_runs_a_single_branch(pipe, people):
    batches = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda m, a, k: batches.append(k["hidden_states"].shape[0]), with_kwargs=True
    )
    try:
        run(pipe, people[:1], guidance_scale=1.0, output_type="latent")
    finally:
        handle.remove()
    assert batches == [1, 1]


def test_raw_features_equal_identities(pipe, people):
    from ingredients_model.faces import compose_identity_canvas

    two = people[:2]
    expected = run(pipe, two, output_type="latent")
    raw = pipe(
        PROMPT,
        id_cond=[p.id_cond[None] for p in two],
        id_vit_hidden=[[h[None] for h in p.id_vit_hidden] for p in two],
        image=compose_identity_canvas([p.aligned_face for p in two], width=W, height=H),
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
    ).frames
    torch.testing.assert_close(raw, expected, rtol=0, atol=0)


def test_cache_threshold_zero_equals_uncached_and_large_threshold_skips(pipe, people):
    plain = run(pipe, people[:2], num_inference_steps=3, output_type="latent")
    zero = run(pipe, people[:2], num_inference_steps=3, output_type="latent", cache_threshold=0.0)
    torch.testing.assert_close(zero, plain, rtol=0, atol=0)
    assert not pipe.transformer.is_cache_enabled
    skipped = run(pipe, people[:2], num_inference_steps=3, output_type="latent", cache_threshold=1e9)
    assert (skipped - plain).abs().max() > 1e-6
    assert not pipe.transformer.is_cache_enabled


def test_output_types(pipe, people):
    latents = run(pipe, people[:1], output_type="latent")
    assert latents.shape == (1, (F - 1) // 4 + 1, 4, H // 8, W // 8)
    pt = run(pipe, people[:1], output_type="pt")
    assert pt.shape == (1, F, 3, H, W)
    pil = run(pipe, people[:1], output_type="pil")
    assert len(pil) == 1 and len(pil[0]) == F
    assert all(isinstance(im, PIL.Image.Image) and im.size == (W, H) for im in pil[0])
    np_frames = run(pipe, people[:1], output_type="np")
    np.testing.assert_allclose(np_frames[0], pt[0].permute(0, 2, 3, 1).numpy(), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(pil[0][0]), (np_frames[0, 0] * 255).round().astype(np.uint8))
    video = pipe(PROMPT, identities=people[:1], num_inference_steps=1, return_dict=False)
    assert isinstance(video, tuple) and video[0].shape == (1, F, H, W, 3)
    with pytest.raises(IngredientsError, match="output_type"):
        run(pipe, people[:1], output_type="gif")


def test_callback_called_each_step_and_can_replace_latents(pipe, people):
    seen = []

    def callback(p, step, timestep, kwargs):
        seen.append((step, int(timestep), tuple(kwargs["latents"].shape)))
        return {"latents": torch.zeros_like(kwargs["latents"])}

    out = run(pipe, people[:2], num_inference_steps=4, output_type="latent", callback_on_step_end=callback)
    assert [s for s, _, _ in seen] == [0, 1, 2, 3]
    assert len({t for _, t, _ in seen}) == 4
    assert all(shape == tuple(out.shape) for _, _, shape in seen)
    assert torch.count_nonzero(out) == 0


def test_router_mode_and_face_scale_reach_the_transformer(pipe, people):
    soft = run(pipe, people[:2], output_type="latent", router_mode="soft")
    hard = run(pipe, people[:2], output_type="latent", router_mode="hard")
    no_face = run(pipe, people[:2], output_type="latent", local_face_scale=0.0)
    assert (soft - hard).abs().max() > 0
    assert (soft - no_face).abs().max() > 0
    assert pipe.transformer.router_mode == "soft"


def test_prompt_batch(pipe, people):
    frames = pipe(
        [PROMPT, "a man walks along a city street at night"],
        identities=people[:2],
        num_inference_steps=1,
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert frames.shape == (2, F, H, W, 3)


def test_cached_prompt_embeds_after_freeing_the_text_encoder(pipe, people):
    expected = run(pipe, people[:2], output_type="latent", negative_prompt="blurry")
    embeds, negative = pipe.encode_prompt(PROMPT, negative_prompt="blurry")
    text_encoder = pipe.text_encoder
    pipe.free_text_encoder()
    try:
        assert pipe.text_encoder is None
        got = pipe(
            identities=people[:2],
            prompt_embeds=embeds,
            negative_prompt_embeds=negative,
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
        ).frames
        with pytest.raises(IngredientsError, match="has no text encoder"):
            run(pipe, people[:1])
    finally:
        pipe.register_modules(text_encoder=text_encoder)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"height": 2 * H}, "renders"),
        ({"num_frames": F + 8}, "more than the 9 frames"),
        ({"num_frames": F + 12}, "more than the 9 frames"),  # rounded down to 17 first
        ({"max_sequence_length": 64}, "max_sequence_length"),
        ({"cache_threshold": -1.0}, "cache_threshold"),
        ({"cfg_routing": "sometimes"}, "cfg_routing"),
        ({"num_videos_per_prompt": 0}, "num_videos_per_prompt"),
    ],
)
def test_bad_arguments_raise_ingredients_error(pipe, people, kwargs, match):
    with pytest.raises(IngredientsError, match=match):
        run(pipe, people[:1], **kwargs)


def test_needs_people(pipe):
    with pytest.raises(IngredientsError, match="at least one person"):
        pipe(PROMPT, num_inference_steps=1)


def test_group_offload_gives_the_same_frames(tiny_model_dir, people, pipe):
    offloaded = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32, memory="group_offload")
    offloaded.set_progress_bar_config(disable=True)
    assert offloaded.vae.use_tiling and offloaded.vae.use_slicing
    expected = run(pipe, people[:2], output_type="latent")
    torch.testing.assert_close(run(offloaded, people[:2], output_type="latent"), expected)
    # the first-block cache hooks stack on the offloading hooks
    torch.testing.assert_close(
        run(offloaded, people[:2], output_type="latent", cache_threshold=0.0), expected
    )


def test_memory_modes_are_checked(tiny_model_dir):
    auto = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32, memory="auto")
    assert auto.transformer.device.type == "cpu" and not auto.vae.use_tiling  # auto on the CPU: no offload
    with pytest.raises(IngredientsError, match="needs a GPU"):
        load_pipeline(tiny_model_dir, device="cpu", memory="model_offload")
    with pytest.raises(IngredientsError, match="Unknown memory mode"):
        load_pipeline(tiny_model_dir, device="cpu", memory="lots")


def test_offload_hook_runs_before_identity_encoding(pipe, people, monkeypatch):
    """Under model CPU offload the transformer's accelerate hook must onload it before encode_identities."""
    from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module

    events = []

    class Recorder(ModelHook):
        def pre_forward(self, module, *args, **kwargs):
            events.append("onload")
            return args, kwargs

    original = pipe.transformer.encode_identities
    monkeypatch.setattr(
        pipe.transformer, "encode_identities", lambda *a, **k: events.append("encode") or original(*a, **k)
    )
    add_hook_to_module(pipe.transformer, Recorder())
    try:
        run(pipe, people[:2], num_inference_steps=2, output_type="latent")
    finally:
        remove_hook_from_module(pipe.transformer)
    assert events == ["onload", "encode", "onload", "onload"]
