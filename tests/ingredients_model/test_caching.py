"""Step caches (first-block, MagCache, TaylorSeer) on the tiny pipeline: exact at threshold 0, else skip."""

from __future__ import annotations

import pytest
import torch
from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

from ingredients_model.caching import TAYLORSEER_IDENTIFIERS, cache_config
from ingredients_model.errors import IngredientsError

STEPS = 4
RATIOS = [1.0, 0.98, 0.95, 1.03]  # stand-in magnitude ratios (none exactly 1 after step 0)

EXACT = {
    "first_block": {"kind": "first_block", "threshold": 0.0},
    "mag": {"kind": "mag", "threshold": 0.0, "mag_ratios": RATIOS},
    "taylorseer": {"kind": "taylorseer", "cache_interval": 1},
    "taylorseer_lite": {"kind": "taylorseer", "cache_interval": 1, "use_lite_mode": True},
}
SKIPPING = {
    "first_block": {"kind": "first_block", "threshold": 1e9},
    "mag": {"kind": "mag", "threshold": 1e9, "retention_ratio": 0.0, "mag_ratios": RATIOS},
    "taylorseer": {"kind": "taylorseer", "cache_interval": 2, "disable_cache_before_step": 1},
    "taylorseer_lite": {
        "kind": "taylorseer",
        "cache_interval": 2,
        "disable_cache_before_step": 1,
        "use_lite_mode": True,
    },
}


def denoise(pipe, people, **kwargs) -> tuple[torch.Tensor, int]:
    """Latents of a short call, and how many steps computed the last block's feed-forward."""
    computed = []
    last_linear = pipe.transformer.transformer_blocks[-1].ff.net[-1]
    handle = last_linear.register_forward_hook(lambda *_: computed.append(1))
    try:
        latents = pipe(
            "two friends talk on a park bench",
            identities=people,
            num_inference_steps=STEPS,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
            **kwargs,
        ).frames
    finally:
        handle.remove()
    return latents, len(computed)


@pytest.fixture(scope="module")
def uncached(pipe, people):
    return {n: denoise(pipe, people[:n]) for n in (1, 2)}


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("name", list(EXACT))
def test_threshold_zero_is_bit_identical_to_no_cache(pipe, people, uncached, name, count):
    latents, computed = denoise(pipe, people[:count], cache=EXACT[name])
    plain, plain_computed = uncached[count]
    assert plain_computed == computed == STEPS
    torch.testing.assert_close(latents, plain, rtol=0, atol=0)
    assert not pipe.transformer.is_cache_enabled


@pytest.mark.parametrize("name", list(SKIPPING))
def test_an_aggressive_cache_skips_steps(pipe, people, uncached, name):
    latents, computed = denoise(pipe, people[:2], cache=SKIPPING[name])
    assert 1 <= computed < STEPS
    assert (latents - uncached[2][0]).abs().max() > 1e-4
    assert not pipe.transformer.is_cache_enabled


def test_cache_threshold_is_short_for_the_first_block_spec(pipe, people):
    a, _ = denoise(pipe, people[:2], cache_threshold=1e9)
    b, _ = denoise(pipe, people[:2], cache={"kind": "first_block", "threshold": 1e9})
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(IngredientsError, match="either cache or cache_threshold"):
        denoise(pipe, people[:2], cache={"kind": "first_block"}, cache_threshold=0.1)


def test_mag_calibration_computes_every_step_and_prints_the_ratios(pipe, people, uncached, capsys):
    latents, computed = denoise(pipe, people[:2], cache={"kind": "mag", "calibrate": True})
    assert computed == STEPS
    torch.testing.assert_close(latents, uncached[2][0], rtol=0, atol=0)
    assert "mag_ratios" in capsys.readouterr().out


def test_diffusers_config_objects_are_accepted():
    fbc = FirstBlockCacheConfig(threshold=0.1)
    assert cache_config(fbc, 50) is fbc
    mag = cache_config({"kind": "mag", "mag_ratios": RATIOS, "threshold": 0.1}, 50)
    assert isinstance(mag, MagCacheConfig) and mag.num_inference_steps == 50 and len(mag.mag_ratios) == 50
    taylor = cache_config({"kind": "taylorseer", "taylor_factors_dtype": "float32"}, 50)
    assert isinstance(taylor, TaylorSeerCacheConfig)
    assert taylor.taylor_factors_dtype == torch.float32 and taylor.cache_identifiers == TAYLORSEER_IDENTIFIERS
    assert cache_config(None, 50) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "teacache"}, "Unknown cache kind"),
        ({"threshold": 0.1}, "Unknown cache kind"),
        ({"kind": "first_block", "treshold": 0.1}, "no option"),
        ({"kind": "first_block", "threshold": -1}, "threshold must be"),
        ({"kind": "first_block", "threshold": "high"}, "threshold must be"),
        ({"kind": "mag", "threshold": 0.1}, "needs the model's magnitude ratios"),
        ({"kind": "mag", "mag_ratios": [1.0, -2.0]}, "positive numbers"),
        ({"kind": "mag", "mag_ratios": RATIOS, "num_inference_steps": 8}, "no option"),
        ({"kind": "taylorseer", "cache_interval": 0}, "cache_interval must be"),
        ({"kind": "taylorseer", "taylor_factors_dtype": "int8"}, "taylor_factors_dtype"),
        (MagCacheConfig(mag_ratios=RATIOS, num_inference_steps=8), "runs 50 steps"),
        (TaylorSeerCacheConfig(), "matches no module"),
    ],
)
def test_bad_specs_raise_a_clear_error(spec, message):
    with pytest.raises(IngredientsError, match=message):
        cache_config(spec, 50)


def test_a_bad_spec_fails_before_any_work(pipe, people, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("encoded a prompt before checking the cache spec")

    monkeypatch.setattr(pipe, "encode_prompt", fail)
    with pytest.raises(IngredientsError, match="Unknown cache kind"):
        denoise(pipe, people[:2], cache={"kind": "nope"})
