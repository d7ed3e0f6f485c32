"""IngredientsAttnProcessor: the CogVideoX joint attention through diffusers' attention dispatcher."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_dispatch import _AttentionBackendRegistry
from diffusers.models.attention_processor import Attention, CogVideoXAttnProcessor2_0

from ingredients_model.attention import IngredientsAttnProcessor
from ingredients_model.tiny import tiny_transformer_config
from ingredients_model.transformer import IngredientsTransformer3DModel


def attention_inputs(text: int = 6, video: int = 10, dim: int = 32, head_dim: int = 8):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, video, dim, generator=g)
    encoder = torch.randn(2, text, dim, generator=g)
    angles = torch.randn(video, head_dim, generator=g)
    return hidden, encoder, (angles.cos(), angles.sin())


@pytest.mark.parametrize("rotary", [True, False])
def test_equals_cogvideox_processor_bit_for_bit(rotary):
    torch.manual_seed(0)
    attn = Attention(query_dim=32, dim_head=8, heads=4, qk_norm="layer_norm", eps=1e-6, bias=True)
    hidden, encoder, rope = attention_inputs()
    rope = rope if rotary else None
    with torch.no_grad():
        attn.set_processor(CogVideoXAttnProcessor2_0())
        expected = attn(hidden_states=hidden, encoder_hidden_states=encoder, image_rotary_emb=rope)
        attn.set_processor(IngredientsAttnProcessor())
        ours = attn(hidden_states=hidden, encoder_hidden_states=encoder, image_rotary_emb=rope)
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_blocks_use_it_and_attention_backends_reach_it():
    model = IngredientsTransformer3DModel(**tiny_transformer_config())
    processors = {type(p) for p in model.attn_processors.values()}
    assert processors == {IngredientsAttnProcessor}
    active, _ = _AttentionBackendRegistry.get_active_backend()
    model.set_attention_backend("_native_math")  # also sets diffusers' process-wide active backend
    try:
        backends = {block.attn1.processor._attention_backend for block in model.transformer_blocks}
        assert backends == {"_native_math"}
    finally:
        model.reset_attention_backend()
        _AttentionBackendRegistry.set_active_backend(active)
