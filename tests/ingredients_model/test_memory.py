"""Memory and FLOPs on paper: counts from the released configs on the meta device, and how auto uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ingredients_model import memory
from ingredients_model.checkpoint import _resolve_memory
from ingredients_model.components import RELEASED_CLIP, build_models
from ingredients_model.flops import clip_flops

REFERENCE = Path("/work/shared/reference/ingredients_transformer_5b_i2v.keys.json")
GB = 1e9
TOKENS = 226 + 13 * 30 * 45  # text + video tokens of a 49x480x720 clip


def test_component_bytes_are_the_released_parameter_counts():
    sizes = {c.name: c for c in memory.component_memory()}
    if REFERENCE.is_file():
        counts = json.loads(REFERENCE.read_text())["counts"]["summary"]
        assert sizes["transformer"].parameters == counts["total_params"] == 6_382_911_712
    assert sizes["transformer"].buffers == 17776 * 3072  # the learned positional embedding
    assert sizes["transformer"].bytes == 2 * (6_382_911_712 + 17776 * 3072)  # 12.88 GB: the shards' size
    assert sizes["text_encoder"].parameters == 4_762_310_656  # T5 v1.1 XXL encoder, tied embedding once
    assert sizes["vae"].parameters == 215_583_907
    assert sizes["text_encoder"].largest_layer_bytes == 2 * 32128 * 4096  # the token embedding


def test_activation_and_cache_estimates_follow_the_stated_shapes():
    hidden = 2 * TOKENS * 3072 * 2  # CFG batch 2, bf16
    act = memory.activation_bytes()
    assert act["transformer_step"] == memory.STEP_HIDDEN_TENSORS * hidden
    assert act["vae_decode_tiled"] < act["vae_decode"]
    caches = memory.cache_state_bytes()
    assert caches["taylorseer"] == 42 * 2 * 2 * TOKENS * 2 * 3072 * 2  # ~36.7 GB
    assert caches["mag"] < caches["first_block"] < caches["taylorseer"]
    assert caches["taylorseer_lite"] < 0.1 * GB
    assert memory.activation_bytes(guidance=False)["transformer_step"] == act["transformer_step"] // 2


def test_memory_modes_add_up_and_offloading_needs_less():
    estimates = {e.mode: e for e in memory.estimate_memory()}
    assert list(estimates) == list(memory.MEMORY_MODE_ESTIMATES)
    for e in estimates.values():
        assert e.peak_bytes == sum(e.parts.values())
        assert e.required_free_bytes > e.peak_bytes
    weights = sum(c.bytes for c in memory.component_memory())
    assert estimates["none"].peak_bytes == weights + max(memory.activation_bytes().values())
    peaks = [estimates[m].peak_bytes for m in memory.MEMORY_MODE_ESTIMATES]
    assert peaks == sorted(peaks, reverse=True)
    assert 20 * GB < estimates["none"].peak_bytes < 40 * GB


@pytest.mark.parametrize(
    ("free_gb", "mode"), [(80, "none"), (29, "model_offload"), (24, "model_offload"), (12, "group_offload")]
)
def test_auto_memory_mode_comes_from_the_estimates(monkeypatch, free_gb, mode):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free_gb * GB), int(80 * GB)))
    assert _resolve_memory("auto", torch.device("cuda")) == mode


def test_memory_report_prints_and_writes_json(tmp_path, capsys):
    memory.main(["--json", str(tmp_path / "memory.json")])
    out = capsys.readouterr().out
    assert "12.88 GB" in out and "Assumptions" in out
    report = json.loads((tmp_path / "memory.json").read_text())
    assert {m["mode"] for m in report["modes"]} == set(memory.MEMORY_MODE_ESTIMATES)


def test_flop_count_of_a_released_clip():
    flops = clip_flops()
    # dense transformer maths: 24·d² per token per block (QKV, output, 4x feed-forward) + 4·S²·d attention
    d, blocks, batch = 3072, 42, 2
    linear = 24 * d * d * TOKENS * blocks * batch
    attention = 4 * TOKENS * TOKENS * d * blocks * batch
    assert flops.step_attention == pytest.approx(attention, rel=0.01)
    assert flops.step - flops.step_identity == pytest.approx(linear + attention, rel=0.01)
    assert 3.2e16 < 50 * (flops.step - flops.step_identity) < 3.4e16  # the issue's ≈3.3e16 dense figure
    assert flops.total == pytest.approx(
        50 * flops.step + flops.vae_decode + flops.vae_encode + flops.text_encode
    )
    assert 30 < flops.seconds() < 40


def test_tiny_models_build_on_the_cpu_with_weights():
    models = build_models("tiny", device="cpu", dtype=torch.float32)
    assert all(
        p.device.type == "cpu" and p.dtype == torch.float32 for m in models.values() for p in m.parameters()
    )
    assert RELEASED_CLIP.latent_shape(16) == (13, 16, 60, 90)
