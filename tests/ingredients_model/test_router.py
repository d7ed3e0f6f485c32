"""ID router maths, routing weights, routing loss and IdentityFeatures batching."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ingredients_model.errors import IngredientsError
from ingredients_model.identity import IdentityFeatures
from ingredients_model.router import (
    IDRouter,
    flatten_routing_masks,
    routing_loss,
    routing_weights,
)


def test_router_layout_matches_released_shapes():
    router = IDRouter(dim=3072, id_dim=2048, id_length=32, inner_dim=2048)
    shapes = {k: list(v.shape) for k, v in router.state_dict().items()}
    assert shapes == {
        "norm1.weight": [2048],
        "norm1.bias": [2048],
        "norm2.weight": [3072],
        "norm2.bias": [3072],
        "id_merge.weight": [1, 32],
        "to_q.weight": [2048, 3072],
        "to_kv.weight": [2048, 2048],
    }


def test_router_logits_follow_the_documented_equations():
    torch.manual_seed(0)
    router = IDRouter(dim=12, id_dim=8, id_length=4, inner_dim=6)
    hidden = torch.randn(2, 5, 12)
    tokens = torch.randn(2, 3, 4, 8)  # [B, N, Q, D]
    merged = torch.einsum("q,bnqd->bnd", router.id_merge.weight[0], F.layer_norm(tokens, (8,)))
    keys = merged @ router.to_kv.weight.T
    query = F.layer_norm(hidden, (12,)) @ router.to_q.weight.T
    expected = torch.einsum("bli,bni->bln", query, keys)  # no 1/sqrt(d), as released
    torch.testing.assert_close(router(hidden, tokens), expected)
    assert router(hidden, tokens).shape == (2, 5, 3)


def test_soft_weights_are_a_distribution_and_hard_weights_one_hot():
    logits = torch.randn(2, 7, 4)
    soft = routing_weights(logits, "soft")
    torch.testing.assert_close(soft.sum(-1), torch.ones(2, 7))
    assert (soft > 0).all()
    hard = routing_weights(logits, "hard")
    assert torch.equal(hard.sum(-1), torch.ones(2, 7))
    assert torch.equal(hard.argmax(-1), logits.argmax(-1))
    assert set(hard.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(soft, hard)


def test_routing_loss_is_cross_entropy_over_labelled_tokens_averaged_over_blocks():
    torch.manual_seed(0)
    logits = [torch.randn(2, 6, 3, requires_grad=True) for _ in range(2)]
    targets = torch.tensor([[0, 1, 2, -1, -1, 0], [-1, -1, 2, 2, 1, -1]])
    keep = targets != -1
    expected = torch.stack([F.cross_entropy(block[keep], targets[keep]) for block in logits]).mean()
    loss = routing_loss(logits, targets)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for block in logits:
        assert torch.equal(block.grad[~keep], torch.zeros_like(block.grad[~keep]))  # background is ignored
        assert block.grad[keep].abs().sum() > 0


def test_routing_loss_is_small_for_confident_correct_logits_and_zero_without_labels():
    targets = torch.tensor([[0, 1, 1, -1]])
    confident = F.one_hot(targets.clamp(min=0), 2).float() * 50
    assert routing_loss([confident], targets) < 1e-6
    assert routing_loss([-confident], targets) > 10
    assert routing_loss([torch.randn(1, 4, 2)], torch.full((1, 4), -1)).item() == 0.0
    with pytest.raises(IngredientsError):
        routing_loss([], targets)


def test_flatten_routing_masks_checks_shape_range_and_dtype():
    masks = torch.tensor([[[[0, 1], [-1, 1]], [[1, 1], [0, -1]]]])  # [B=1, F=2, 2, 2]
    assert flatten_routing_masks(masks, 1, 8, 2).tolist() == [[0, 1, -1, 1, 1, 1, 0, -1]]
    with pytest.raises(IngredientsError, match="outside"):
        flatten_routing_masks(masks, 1, 8, 1)
    with pytest.raises(IngredientsError, match="latent patches"):
        flatten_routing_masks(masks, 1, 9, 2)
    with pytest.raises(IngredientsError, match="latent patches"):
        flatten_routing_masks(masks, 2, 8, 2)
    with pytest.raises(IngredientsError, match="integer"):
        flatten_routing_masks(masks.float(), 1, 8, 2)


def features(batch: int) -> IdentityFeatures:
    torch.manual_seed(batch)
    return IdentityFeatures(
        tokens=torch.randn(batch, 2, 4, 8),
        router_keys=(torch.randn(batch, 2, 6),) * 2,
        perceiver_keys=(torch.randn(batch, 2, 8, 3),) * 2,
        perceiver_values=(torch.randn(batch, 2, 8, 3),) * 2,
    )


def test_identity_features_tile_to_larger_batches():
    one = features(1)
    assert one.num_people == 2 and one.batch_size == 1 and one.num_blocks == 2
    assert one.for_batch(1) is one
    four = one.for_batch(4)
    assert four.batch_size == 4 and all(k.shape[0] == 4 for k in four.perceiver_values)
    two = features(2)
    cfg = two.for_batch(4)  # [uncond, cond] halves share the encoding of the same samples
    torch.testing.assert_close(cfg.tokens[2:], two.tokens)
    torch.testing.assert_close(cfg.router_keys[1][:2], two.router_keys[1])
    with pytest.raises(IngredientsError, match="divide"):
        two.for_batch(3)


def test_identity_features_move_and_cast():
    half = features(1).to(dtype=torch.bfloat16)
    assert half.tokens.dtype == torch.bfloat16
    assert all(
        t.dtype == torch.bfloat16 for t in (*half.router_keys, *half.perceiver_keys, *half.perceiver_values)
    )
    assert half.to(device="cpu").tokens.device.type == "cpu"
