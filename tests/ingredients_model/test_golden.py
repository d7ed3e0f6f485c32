"""Golden tests: our transformer and pipeline against tensors the released code produced on the same weights.

The fixtures in tests/fixtures/ were recorded by ``scripts/record_golden.py --public-code PATH`` from the
public feizc/Ingredients code (tiny widths, fp32, CPU); ``golden.py`` regenerates the same weights and inputs
here. Rerun the script when the golden setup changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ingredients_model.pipeline import IngredientsPipeline
from tests.helpers import golden

ROOT = Path(__file__).resolve().parents[2]


def fixture(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(path, "pt") as handle:
        metadata = handle.metadata()
    return load_file(path), metadata


@pytest.fixture(scope="module")
def transformer():
    return golden.ingredients_transformer()


@pytest.fixture(scope="module")
def pipe(transformer):
    pipe = IngredientsPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=golden.vae(),
        transformer=transformer,
        scheduler=golden.scheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def assert_matches(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    error = golden.relative_error(actual, expected)
    assert error <= golden.RELATIVE_TOLERANCE, f"max|Δ|/max|released| = {error:.2e}"


def background_masks(batch: int) -> torch.Tensor:
    """All-background routing masks: no loss, but the forward returns every routed block's logits."""
    cfg = golden.TRANSFORMER_CONFIG
    p = cfg["patch_size"]
    frames = (golden.FRAMES - 1) // cfg["temporal_compression_ratio"] + 1
    return torch.full((batch, frames, cfg["sample_height"] // p, cfg["sample_width"] // p), -1)


def test_the_fixtures_were_recorded_with_these_weights(transformer, pipe):
    _, meta = fixture(golden.TRANSFORMER_FIXTURE)
    assert meta["weights_sha256"] == golden.weights_digest(transformer), "rerun scripts/record_golden.py"
    assert json.loads(meta["config"]) == golden.TRANSFORMER_CONFIG
    _, meta = fixture(golden.PIPELINE_FIXTURE)
    assert meta["weights_sha256"] == golden.weights_digest(transformer)
    assert meta["vae_weights_sha256"] == golden.weights_digest(pipe.vae)


def test_transformer_forward_and_router_logits_match_the_release(transformer):
    expected, _ = fixture(golden.TRANSFORMER_FIXTURE)
    conds, vits = golden.people()
    with torch.no_grad():
        out = transformer(
            **golden.transformer_inputs(1),
            id_cond=conds,
            id_vit_hidden=vits,
            routing_masks=background_masks(1),
        )
    assert_matches(out.sample, expected["sample"])
    assert len(out.routing_logits) == transformer.num_face_blocks == 2
    for i, logits in enumerate(out.routing_logits):
        assert_matches(logits, expected[f"router_logits.{i}"])


def test_guidance_batch_matches_the_release_with_released_cfg_routing(transformer):
    expected = fixture(golden.TRANSFORMER_FIXTURE)[0]["sample_guidance_batch"]
    conds, vits = golden.people()
    with torch.no_grad():
        released = transformer(
            **golden.transformer_inputs(2), id_cond=conds, id_vit_hidden=vits, cfg_routing="released"
        ).sample
        per_branch = transformer(
            **golden.transformer_inputs(2), id_cond=conds, id_vit_hidden=vits, cfg_routing="per_branch"
        ).sample
    assert_matches(released, expected)
    # the unconditional half is the same either way; the conditional half is routed differently
    assert_matches(per_branch[:1], expected[:1])
    assert golden.relative_error(per_branch[1:], expected[1:]) > 1e-2


@pytest.mark.parametrize("guidance", golden.GUIDANCES)
def test_pipeline_latents_after_two_steps_match_the_release(pipe, guidance):
    expected = fixture(golden.PIPELINE_FIXTURE)[0][f"latents_guidance_{guidance:g}"]
    latents = pipe(**golden.pipeline_inputs(), guidance_scale=guidance, generator=golden.generator()).frames
    assert_matches(latents, expected)


def test_per_branch_cfg_routing_leaves_the_release_under_guidance(pipe):
    expected = fixture(golden.PIPELINE_FIXTURE)[0]["latents_guidance_6"]
    latents = pipe(
        **golden.pipeline_inputs(), guidance_scale=6.0, generator=golden.generator(), cfg_routing="per_branch"
    ).frames
    assert golden.relative_error(latents, expected) > 1e-3


@pytest.mark.parametrize("count", [1, 3, 4])
def test_other_numbers_of_people_stay_finite_and_routed(transformer, count):
    conds, vits = golden.people(count, seed=golden.SEED + 10)
    inputs = golden.transformer_inputs(1)
    with torch.no_grad():
        out = transformer(**inputs, id_cond=conds, id_vit_hidden=vits, routing_masks=background_masks(1))
        plain = transformer(**inputs).sample
    assert torch.isfinite(out.sample).all()
    assert (out.sample - plain).abs().max() > 1e-3  # the people are injected
    for logits in out.routing_logits:
        assert logits.shape == (1, out.sample.shape[1] * 4 * 6, count) and torch.isfinite(logits).all()
    if count > 1:  # every person receives some tokens' weight
        weights = torch.softmax(torch.stack(out.routing_logits), dim=-1)
        assert (weights.amax(dim=(0, 1, 2)) > 0.5).all()
    for person in range(count):  # and changes the output
        changed = [c.clone() for c in conds]
        changed[person] = changed[person] + 1.0
        with torch.no_grad():
            other = transformer(**inputs, id_cond=changed, id_vit_hidden=vits).sample
        assert (other - out.sample).abs().max() > 1e-5, person


def test_record_script_runs_without_the_public_code_until_asked():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "record_golden.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "--public-code" in result.stdout


def test_rotary_grid_at_the_released_size_equals_the_released_720x480_base():
    """The released pipeline hard-codes its rotary base grid as 720x480 pixels; ours takes it from the
    config (diffusers' ConsisID recipe), which is the same grid for the released config (60x90 latents)."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.consisid.pipeline_consisid import get_resize_crop_region_for_grid

    from ingredients_model.transformer import IngredientsTransformer3DModel

    released = {"sample_height": 60, "sample_width": 90, "attention_head_dim": 64, "patch_size": 2}
    with torch.device("meta"):
        transformer = IngredientsTransformer3DModel(num_attention_heads=1, num_layers=1, **released)
    pipe = IngredientsPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=golden.vae(),
        transformer=transformer,
        scheduler=golden.scheduler(),
    )
    step = 8 * 2
    grid = (480 // step, 720 // step)
    crops = get_resize_crop_region_for_grid(grid, 720 // step, 480 // step)
    expected = get_3d_rotary_pos_embed(embed_dim=64, crops_coords=crops, grid_size=grid, temporal_size=13)
    got = pipe._prepare_rotary_positional_embeddings(480, 720, 13, torch.device("cpu"))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
