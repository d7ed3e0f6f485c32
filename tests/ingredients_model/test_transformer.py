"""IngredientsTransformer3DModel: released layout, multi-identity forward, identity once per shot, loading."""

from __future__ import annotations

import functools
import json
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers.hooks import FirstBlockCacheConfig
from diffusers.models.transformers.consisid_transformer_3d import ConsisIDTransformer3DModel
from safetensors.torch import save_file

from ingredients_model.errors import IngredientsError
from ingredients_model.identity import IdentityFeatures
from ingredients_model.transformer import IngredientsTransformer3DModel

REFERENCE = Path("/work/shared/reference/ingredients_transformer_5b_i2v.keys.json")
RELEASED_ONLY_KEYS = {"LFE_num_tokens": 32, "LFE_output_dim": 768, "LFE_heads": 12}
TINY = {
    "num_attention_heads": 2,
    "attention_head_dim": 24,  # inner 48 → face width int(48 / 3 * 2) = 32
    "in_channels": 8,
    "out_channels": 4,
    "time_embed_dim": 8,
    "text_embed_dim": 16,
    "num_layers": 5,  # routed after blocks 0 and 2; blocks 3-4 come after the last routed block
    "sample_width": 8,
    "sample_height": 8,
    "sample_frames": 9,  # 3 latent frames x 4 x 4 patches = 48 video tokens
    "max_text_seq_length": 8,
    "LFE_id_dim": 16,
    "LFE_vit_dim": 16,
    "LFE_depth": 2,
    "LFE_dim_head": 8,
    "LFE_num_heads": 2,
    "LFE_num_id_token": 2,
    "LFE_num_querie": 4,
    "LFE_ff_mult": 2,
    "LFE_num_scale": 2,
    "cross_attn_dim_head": 8,
    "cross_attn_num_heads": 2,
}
LATENT = (3, 8, 8, 8)  # frames, channels, height, width


@pytest.fixture(scope="module")
def model() -> IngredientsTransformer3DModel:
    torch.manual_seed(0)
    return IngredientsTransformer3DModel(**TINY).eval()


def people(count: int, batch: int = 1, seed: int = 1) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    conds = [torch.randn(batch, 16, generator=g) for _ in range(count)]
    vits = [[torch.randn(batch, 6, 16, generator=g) for _ in range(2)] for _ in range(count)]
    return conds, vits


def inputs(batch: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(batch, *LATENT, generator=g),
        "encoder_hidden_states": torch.randn(batch, 8, 16, generator=g),
        "timestep": torch.full((batch,), 500),
    }


def run(model, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(**kwargs).sample


def naive_injection(self, index, identity, mode, scale, need_logits, from_first_half):
    """Released-style reference: diffusers' PerceiverCrossAttention once per person, router on raw tokens."""
    return functools.partial(_naive_injection, self, index, identity, mode, scale)


def _naive_injection(self, index, identity, mode, scale, hidden_states):
    attn, router = self.perceiver_cross_attention[index], self.router[index]
    outs = [attn(identity.tokens[:, n], hidden_states) for n in range(identity.num_people)]
    logits = router(hidden_states, identity.tokens)
    if mode == "soft":
        weights = torch.softmax(logits, dim=-1)
    else:
        weights = torch.nn.functional.one_hot(logits.argmax(-1), identity.num_people).float()
    mixed = sum(weights[..., n : n + 1] * out for n, out in enumerate(outs))
    return hidden_states + scale * mixed, logits


def test_layout_matches_released_checkpoint_one_for_one():
    reference = json.loads(REFERENCE.read_text())
    with torch.device("meta"):
        released = IngredientsTransformer3DModel(**reference["config"])
    state = released.state_dict()
    assert set(state) == set(reference["tensors"])
    assert {k: list(v.shape) for k, v in state.items()} == reference["tensors"]
    params = sum(p.numel() for p in released.parameters())
    assert params == reference["counts"]["summary"]["total_params"]
    assert [name for name, _ in released.named_buffers() if name in state] == reference["persistent_buffers"]
    assert released.config.LFE_output_dim == 768  # the released config is kept as it is


def test_one_person_equals_diffusers_consisid():
    config = {**TINY, "num_layers": 4}  # diffusers' ConsisID indexes past its modules when num_layers is odd
    torch.manual_seed(0)
    model = IngredientsTransformer3DModel(**config).eval()
    consisid = ConsisIDTransformer3DModel(
        **config,
        is_train_face=True,
        LFE_output_dim=32,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    ).eval()
    missing, unexpected = consisid.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(k.startswith("router.") for k in unexpected)
    conds, vits = people(1)
    ours = run(model, **inputs(), id_cond=conds, id_vit_hidden=vits)
    with torch.no_grad():
        theirs = consisid(**inputs(), id_cond=conds[0], id_vit_hidden=vits[0]).sample
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert not torch.allclose(
        ours, run(model, **inputs()), atol=1e-4
    )  # the face features do change the output


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize("count", [2, 3])
def test_shared_projections_equal_per_person_reference(model, mode, count):
    conds, vits = people(count)
    fast = run(model, **inputs(), id_cond=conds, id_vit_hidden=vits, router_mode=mode)
    naive = IngredientsTransformer3DModel(**TINY).eval()
    naive.load_state_dict(model.state_dict())
    naive._face_injection = types.MethodType(naive_injection, naive)
    reference = run(naive, **inputs(), id_cond=conds, id_vit_hidden=vits, router_mode=mode)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-5)


def test_soft_and_hard_routing_differ(model):
    conds, vits = people(2)
    soft = run(model, **inputs(), id_cond=conds, id_vit_hidden=vits, router_mode="soft")
    hard = run(model, **inputs(), id_cond=conds, id_vit_hidden=vits, router_mode="hard")
    assert (soft - hard).abs().max() > 1e-3


def test_hard_routing_gives_each_token_one_person(model):
    """With hard routing, each token's injection equals exactly one person's perceiver output."""
    conds, vits = people(3)
    identity = model.encode_identities(conds, vits)
    hidden = torch.randn(1, 48, 48)
    with torch.no_grad():
        routed, logits = model._face_injection(0, identity, "hard", 1.0, True, False)(hidden)
        attn = model.perceiver_cross_attention[0]
        per_person = torch.stack([attn(identity.tokens[:, n], hidden) for n in range(3)], dim=-1)
    delta = (routed - hidden).unsqueeze(-1)
    matches = (per_person - delta).abs().amax(dim=2) < 1e-5  # [B, L, N]
    assert torch.equal(matches.sum(-1), torch.ones(1, 48, dtype=torch.long))
    assert torch.equal(matches.float().argmax(-1), logits.argmax(-1))


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_any_number_of_people(model, count):
    conds, vits = people(count)
    identity = model.encode_identities(conds, vits)
    assert identity.num_people == count and identity.tokens.shape == (1, count, 4, 32)
    out = run(model, **inputs(), identity=identity)
    assert out.shape == (1, *LATENT[:1], 4, 8, 8) and torch.isfinite(out).all()


def test_precomputed_identity_equals_raw_path_and_skips_the_extractor(model):
    conds, vits = people(2)
    raw = run(model, **inputs(), id_cond=conds, id_vit_hidden=vits)
    identity = model.encode_identities(conds, vits)
    calls = []
    handle = model.local_facial_extractor.register_forward_hook(lambda *a: calls.append(1))
    try:
        steps = [
            run(model, **{**inputs(), "timestep": torch.tensor([t])}, identity=identity)
            for t in (900, 500, 100)
        ]
    finally:
        handle.remove()
    assert calls == []  # identity work is not redone per step
    torch.testing.assert_close(steps[1], raw, rtol=0, atol=1e-5)
    assert not torch.allclose(steps[0], steps[2])


def test_batch_routes_per_sample(model):
    (a, b), (va, vb) = people(2, seed=1)
    (c, d), (vc, vd) = people(2, seed=2)
    batched = inputs(batch=2)
    out = run(
        model,
        **batched,
        id_cond=[torch.cat([a, c]), torch.cat([b, d])],
        id_vit_hidden=[
            [torch.cat(p) for p in zip(va, vc, strict=True)],
            [torch.cat(p) for p in zip(vb, vd, strict=True)],
        ],
    )
    for i, (pair, vit) in enumerate((([a, b], [va, vb]), ([c, d], [vc, vd]))):
        single = {k: v[i : i + 1] for k, v in batched.items()}
        torch.testing.assert_close(
            out[i : i + 1], run(model, **single, id_cond=pair, id_vit_hidden=vit), atol=1e-5, rtol=0
        )


def test_batch_one_identity_is_shared_by_the_batch(model):
    conds, vits = people(2)
    identity = model.encode_identities(conds, vits)
    batched = inputs(batch=2)
    out = run(model, **batched, identity=identity)  # e.g. both guidance halves
    for i in range(2):
        single = {k: v[i : i + 1] for k, v in batched.items()}
        torch.testing.assert_close(out[i : i + 1], run(model, **single, identity=identity), atol=1e-5, rtol=0)


def test_local_face_scale_and_set_routing(model):
    conds, vits = people(2)
    identity = model.encode_identities(conds, vits)
    no_face = run(model, **inputs())
    torch.testing.assert_close(run(model, **inputs(), identity=identity, local_face_scale=0.0), no_face)
    hard = run(model, **inputs(), identity=identity, router_mode="hard")
    model.set_routing("hard", local_face_scale=0.5)
    try:
        assert model.router_mode == "hard"
        torch.testing.assert_close(
            run(model, **inputs(), identity=identity),
            run(model, **inputs(), identity=identity, local_face_scale=0.5),
        )
        assert not torch.allclose(run(model, **inputs(), identity=identity, local_face_scale=1.0), no_face)
        torch.testing.assert_close(run(model, **inputs(), identity=identity, local_face_scale=1.0), hard)
    finally:
        model.set_routing("soft", local_face_scale=1.0)
    with pytest.raises(IngredientsError):
        model.set_routing("medium")


def routing_masks(batch: int = 1) -> torch.Tensor:
    masks = torch.full((batch, 3, 4, 4), -1)
    masks[:, :, :, :2] = 0
    masks[:, :, 1:3, 3] = 1
    return masks


def test_routing_loss_is_finite_with_gradients_only_where_expected():
    torch.manual_seed(0)
    model = IngredientsTransformer3DModel(**TINY).train()
    conds, vits = people(2)
    out = model(**inputs(), id_cond=conds, id_vit_hidden=vits, routing_masks=routing_masks())
    assert torch.isfinite(out.routing_loss) and out.routing_loss > 0
    assert len(out.routing_logits) == 2 and all(t.shape == (1, 48, 2) for t in out.routing_logits)
    targets = routing_masks().reshape(1, -1)
    keep = targets != -1
    expected = torch.stack([F.cross_entropy(t[keep], targets[keep]) for t in out.routing_logits]).mean()
    torch.testing.assert_close(out.routing_loss, expected)
    out.routing_loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    for name, grad in grads.items():
        if name.startswith("router."):
            assert grad is not None and grad.abs().sum() > 0, name
    # never seen by the routing logits: output head, blocks after the last routed block, last injection
    unused = ("norm_out.", "proj_out.", "norm_final.", "transformer_blocks.3.", "transformer_blocks.4.")
    unused += ("perceiver_cross_attention.1.",)
    for name, grad in grads.items():
        if name.startswith(unused):
            assert grad is None, name


def test_routing_loss_ignores_background_and_survives_checkpointing():
    torch.manual_seed(0)
    model = IngredientsTransformer3DModel(**TINY).train()
    conds, vits = people(2)
    background = torch.full((1, 3, 4, 4), -1)
    loss = model(**inputs(), id_cond=conds, id_vit_hidden=vits, routing_masks=background).routing_loss
    assert loss.item() == 0.0
    plain = model(
        **inputs(), id_cond=conds, id_vit_hidden=vits, routing_masks=routing_masks(), return_dict=False
    )
    plain[1].backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    model.enable_gradient_checkpointing()
    ckpt = model(
        **inputs(), id_cond=conds, id_vit_hidden=vits, routing_masks=routing_masks(), return_dict=False
    )
    ckpt[1].backward()
    torch.testing.assert_close(ckpt[0], plain[0])
    torch.testing.assert_close(ckpt[1], plain[1])
    got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-4)


def test_invalid_inputs_raise_ingredients_error(model):
    conds, vits = people(2)
    with pytest.raises(IngredientsError, match="router mode"):
        model(**inputs(), id_cond=conds, id_vit_hidden=vits, router_mode="medium")
    with pytest.raises(IngredientsError, match="outside"):
        model(**inputs(), id_cond=conds, id_vit_hidden=vits, routing_masks=torch.full((1, 3, 4, 4), 2))
    with pytest.raises(IngredientsError, match="latent patches"):
        model(
            **inputs(),
            id_cond=conds,
            id_vit_hidden=vits,
            routing_masks=torch.zeros(1, 3, 4, 3, dtype=torch.long),
        )
    with pytest.raises(IngredientsError, match="id_cond"):
        model.encode_identities([torch.randn(1, 15)], vits[:1])
    with pytest.raises(IngredientsError, match="one of each"):
        model.encode_identities(conds, vits[:1])
    identity = model.encode_identities(conds, vits)
    short = IdentityFeatures(
        identity.tokens, identity.router_keys[:1], identity.perceiver_keys[:1], identity.perceiver_values[:1]
    )
    with pytest.raises(IngredientsError, match="blocks"):
        model(**inputs(), identity=short)
    with pytest.raises(IngredientsError, match="divide"):
        model(**inputs(batch=3), identity=model.encode_identities(*people(2, batch=2)))


def test_unbatched_identity_tensors_are_accepted(model):
    conds, vits = people(2)
    flat = model.encode_identities([c[0] for c in conds], [[v[0] for v in vit] for vit in vits])
    torch.testing.assert_close(flat.tokens, model.encode_identities(conds, vits).tokens)


def public_config(model) -> dict:
    return {k: v for k, v in model.config.items() if not k.startswith("_")}


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = IngredientsTransformer3DModel.from_pretrained(tmp_path).eval()
    assert public_config(loaded) == public_config(model)
    conds, vits = people(2)
    torch.testing.assert_close(
        run(loaded, **inputs(), id_cond=conds, id_vit_hidden=vits),
        run(model, **inputs(), id_cond=conds, id_vit_hidden=vits),
    )


def write_released_style_folder(
    folder: Path, model: IngredientsTransformer3DModel, drop: str | None = None
) -> dict:
    """A folder as released: ConsisID class name, released-only config keys, bf16 safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}
    config.update(RELEASED_ONLY_KEYS, _class_name="ConsisIDTransformer3DModel", _diffusers_version="0.31.0")
    (folder / "config.json").write_text(json.dumps(config))
    weights = {k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items() if k != drop}
    save_file(weights, folder / "diffusion_pytorch_model.safetensors")
    return weights


def test_loads_released_style_folder_strictly(model, tmp_path):
    weights = write_released_style_folder(tmp_path / "transformer", model)
    loaded, info = IngredientsTransformer3DModel.from_pretrained(
        tmp_path / "transformer", output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"))
    state = loaded.state_dict()
    assert state.keys() == weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(state[name], tensor.to(state[name].dtype)), name
    assert loaded.config.LFE_output_dim == 768 and loaded.config.LFE_num_tokens == 32


def test_released_style_folder_with_missing_tensor_fails(model, tmp_path):
    write_released_style_folder(tmp_path, model, drop="router.1.id_merge.weight")
    with pytest.raises(IngredientsError, match=r"router\.1\.id_merge\.weight"):
        IngredientsTransformer3DModel.from_pretrained(tmp_path)


def test_first_block_cache_skips_blocks_and_their_face_injection(tmp_path):
    torch.manual_seed(0)
    model = IngredientsTransformer3DModel(**TINY).eval()
    identity = model.encode_identities(*people(2))
    full = run(model, **inputs(), identity=identity)
    model.enable_cache(FirstBlockCacheConfig(threshold=0.0))
    try:
        with model.cache_context("cond"):
            first = run(model, **inputs(), identity=identity)
            again = run(model, **inputs(), identity=identity)  # same first-block residual → cached tail
            other = run(model, **inputs(seed=5), identity=identity)
    finally:
        model.disable_cache()
    torch.testing.assert_close(first, full)
    torch.testing.assert_close(again, full, atol=1e-5, rtol=0)  # injections are not applied twice
    torch.testing.assert_close(other, run(model, **inputs(seed=5), identity=identity))


def test_lora_adapter_attaches(model):
    from peft import LoraConfig

    lora = IngredientsTransformer3DModel(**TINY).eval()
    lora.load_state_dict(model.state_dict())
    lora.add_adapter(
        LoraConfig(
            r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
        )
    )
    conds, vits = people(2)
    with_lora = run(lora, **inputs(), id_cond=conds, id_vit_hidden=vits)
    assert not torch.allclose(with_lora, run(model, **inputs(), id_cond=conds, id_vit_hidden=vits))
    assert any("lora" in name for name, _ in lora.named_parameters())


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_bfloat16_forward_matches_float32(model, mode):
    half = IngredientsTransformer3DModel(**TINY).eval()
    half.load_state_dict(model.state_dict())
    half = half.to(torch.bfloat16)
    conds, vits = people(2)
    identity = half.encode_identities(conds, vits)
    assert identity.tokens.dtype == torch.bfloat16
    low = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs().items()}
    out = run(half, **low, identity=identity, router_mode=mode)
    assert out.dtype == torch.bfloat16
    reference = run(model, **inputs(), id_cond=conds, id_vit_hidden=vits, router_mode=mode)
    assert (out.float() - reference).abs().mean() < 0.05 * reference.abs().mean()


def test_without_face_modules_the_model_is_plain_cogvideox():
    plain = IngredientsTransformer3DModel(**{**TINY, "is_train_face": False}).eval()
    assert not any(
        k.startswith(("local_facial_extractor", "perceiver", "router")) for k in plain.state_dict()
    )
    assert plain.num_face_blocks == 0
    assert run(plain, **inputs()).shape == (1, *LATENT[:1], 4, 8, 8)
    with pytest.raises(IngredientsError, match="no face modules"):
        plain(**inputs(), id_cond=people(1)[0], id_vit_hidden=people(1)[1])


@pytest.mark.slow
def test_regional_compile_needs_no_graph_per_routed_block():
    """``compile_repeated_blocks``: each routed block's injection holds its modules and features, not its
    index, so dynamo compiles the same graphs however many blocks are routed (and none breaks)."""
    from torch._dynamo.utils import counters

    def graphs(num_layers: int) -> int:
        torch._dynamo.reset()
        counters.clear()
        torch.manual_seed(0)
        model = IngredientsTransformer3DModel(**{**TINY, "num_layers": num_layers}).eval()
        identity = model.encode_identities(*people(2))
        expected = run(model, **inputs(), identity=identity)
        model.compile_repeated_blocks(fullgraph=True, backend="eager")
        try:
            torch.testing.assert_close(run(model, **inputs(), identity=identity), expected)
            return counters["stats"]["unique_graphs"]
        finally:
            torch._dynamo.reset()

    assert graphs(8) == graphs(4)  # 4 and 2 routed blocks
