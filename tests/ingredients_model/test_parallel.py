"""Context parallelism on CPU: 2 processes with gloo against one process, on tiny models.

Two stand-ins make diffusers' GPU-only pieces run on a CPU, in the worker processes only:
- ``torch.accelerator.device_count`` returns 1: diffusers' ``enable_parallelism`` picks each rank's device as
  ``rank % device_count()``, which is a division by zero without an accelerator.
- ring attention needs an attention op that returns the log-sum-exp; diffusers' ``_native_flash`` op calls the
  CUDA flash kernel, so the test routes it to PyTorch's CPU flash kernel, which returns the same two tensors.

Not testable here: uneven splits (diffusers' ``ulysses_anything``/``ring_anything``, which the released model
needs on 3, 4 or 8 GPUs: 226 text tokens, 1350 video tokens per latent frame). Gathering unequal slices needs
an all-gather of unequal sizes, which NCCL does and gloo refuses ("invalid tensor size").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from ingredients_model.errors import IngredientsError
from ingredients_model.tiny import tiny_transformer_config

pytestmark = pytest.mark.slow

WORLD = 2
STEPS = 4
PROMPT = "two friends talk on a park bench"
RATIOS = [1.0, 0.98, 0.95, 1.03]
TAYLOR = {"kind": "taylorseer", "cache_interval": 2, "disable_cache_before_step": 1}
PIPELINE_CACHES = {
    "none": None,
    "mag": {"kind": "mag", "threshold": 1e9, "retention_ratio": 0.0, "mag_ratios": RATIOS},
    # float32 factors: bf16 ones would round the ~1e-7 differences between the runs up to ~1e-3
    "taylorseer": {**TAYLOR, "taylor_factors_dtype": "float32"},
    "taylorseer_lite": {**TAYLOR, "taylor_factors_dtype": "float32", "use_lite_mode": True},
}


def _cpu_flash_forward_op(
    ctx,
    query,
    key,
    value,
    attn_mask=None,
    dropout_p=0.0,
    is_causal=False,
    scale=None,
    enable_gqa=False,
    return_lse=False,
    _save_ctx=True,
    _parallel_config=None,
):
    """diffusers' ``_native_flash_attention_forward_op`` on PyTorch's CPU flash kernel ([B, S, H, D])."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), dropout_p, is_causal, scale=scale
    )
    out, lse = out.transpose(1, 2).contiguous(), lse.transpose(1, 2).contiguous()
    return (out, lse) if return_lse else out


def _transformer_inputs(config: dict) -> dict:
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    g = torch.Generator().manual_seed(1)
    frames = (config["sample_frames"] - 1) // 4 + 1
    h, w, p = config["sample_height"], config["sample_width"], 2
    grid = (h // p, w // p)
    rope = get_3d_rotary_pos_embed(config["attention_head_dim"], ((0, 0), grid), grid, frames)
    identity_args = (
        [torch.randn(1, config["LFE_id_dim"], generator=g) for _ in range(2)],
        [[torch.randn(1, 5, config["LFE_vit_dim"], generator=g) for _ in range(2)] for _ in range(2)],
    )
    return {
        "hidden_states": torch.randn(2, frames, config["in_channels"], h, w, generator=g),
        "encoder_hidden_states": torch.randn(
            2, config["max_text_seq_length"], config["text_embed_dim"], generator=g
        ),
        "timestep": torch.tensor([500, 500]),
        "image_rotary_emb": rope,
    }, identity_args


def _transformer_case(name: str, config: dict, **degrees) -> dict:
    from ingredients_model.parallel import enable_context_parallel
    from ingredients_model.transformer import IngredientsTransformer3DModel

    torch.manual_seed(0)
    model = IngredientsTransformer3DModel(**config).eval()
    inputs, (id_cond, id_vit) = _transformer_inputs(config)
    with torch.no_grad():
        identity = model.encode_identities(id_cond, id_vit)
        expected = model(**inputs, identity=identity).sample
        applied = enable_context_parallel(model, **degrees)
        got = model(**inputs, identity=identity).sample
    return {
        f"transformer {name}": (got - expected).abs().max().item(),
        f"transformer {name} uneven": applied.ulysses_anything or applied.ring_anything,
    }


def _pipeline_cases(folder: Path, features: Path) -> dict:
    from PIL import Image

    from ingredients_model.checkpoint import load_pipeline
    from ingredients_model.parallel import enable_context_parallel

    tensors = load_file(features / "people.safetensors")
    id_cond = [tensors[f"id_cond.{n}"] for n in range(2)]
    id_vit = [[tensors[f"id_vit.{n}.{s}"] for s in range(2)] for n in range(2)]
    image = Image.open(features / "canvas.png")
    pipe = load_pipeline(folder, device="cpu", dtype=torch.float32, memory="none")
    pipe.set_progress_bar_config(disable=True)

    def call(cache):
        return pipe(
            PROMPT,
            id_cond=id_cond,
            id_vit_hidden=id_vit,
            image=image,
            num_inference_steps=STEPS,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
            cache=cache,
        ).frames

    expected = {name: call(cache) for name, cache in PIPELINE_CACHES.items()}
    enable_context_parallel(pipe)
    results = {
        f"pipeline {name}": (call(PIPELINE_CACHES[name]) - expected[name]).abs().max().item()
        for name in expected
    }
    try:
        call({"kind": "first_block", "threshold": 0.1})
    except IngredientsError as error:
        results["first_block refused"] = "context parallelism" in str(error)
    return results


def _worker(rank: int, world: int, tmp: str, folder: str) -> None:
    import diffusers.models.attention_dispatch as dispatch

    torch.set_num_threads(1)
    torch.accelerator.device_count = lambda: 1  # stand-in, see the module docstring
    dispatch._native_flash_attention_forward_op = _cpu_flash_forward_op  # stand-in, see the module docstring
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world
    )
    try:
        config = tiny_transformer_config()
        results = {}
        results.update(_transformer_case("ulysses", config))
        results.update(_pipeline_cases(Path(folder), Path(tmp)))
        results.update(_transformer_case("ring", config, ring_degree=world))  # last: sets the flash backend
        Path(tmp, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_model_dir, people) -> dict:
    from ingredients_model.faces import compose_identity_canvas
    from ingredients_model.tiny import TINY_SIZE

    tmp = tmp_path_factory.mktemp("context-parallel")
    tensors = {f"id_cond.{n}": p.id_cond[None].contiguous() for n, p in enumerate(people[:2])}
    for n, person in enumerate(people[:2]):
        tensors.update({f"id_vit.{n}.{s}": h[None].contiguous() for s, h in enumerate(person.id_vit_hidden)})
    save_file(tensors, tmp / "people.safetensors")
    canvas = compose_identity_canvas(
        [p.aligned_face for p in people[:2]], width=TINY_SIZE["width"], height=TINY_SIZE["height"]
    )
    canvas.save(tmp / "canvas.png")
    mp.spawn(_worker, args=(WORLD, str(tmp), str(tiny_model_dir)), nprocs=WORLD, join=True)
    per_rank = [json.loads((tmp / f"rank{rank}.json").read_text()) for rank in range(WORLD)]
    print(
        "\ncontext parallel (2 processes, gloo) max |diff| vs one process:", json.dumps(per_rank[0], indent=1)
    )
    return per_rank


@pytest.mark.parametrize("case", ["ulysses", "ring"])
def test_transformer_matches_one_process(results, case):
    for rank in results:
        assert rank[f"transformer {case}"] < 1e-5
        assert not rank[f"transformer {case} uneven"]


def test_degrees_that_do_not_divide_the_released_token_counts_split_unevenly():
    from ingredients_model.parallel import divides_every_clip
    from ingredients_model.transformer import IngredientsTransformer3DModel

    with torch.device("meta"):
        released = IngredientsTransformer3DModel()
    assert [d for d in (2, 3, 4, 8) if divides_every_clip(released, d)] == [2]


@pytest.mark.parametrize("cache", list(PIPELINE_CACHES))
def test_pipeline_with_step_caches_matches_one_process(results, cache):
    for rank in results:
        assert rank[f"pipeline {cache}"] < 1e-4


def test_first_block_cache_is_refused_under_context_parallelism(results):
    assert all(rank["first_block refused"] for rank in results)


def test_without_a_process_group_the_error_says_how_to_start():
    from ingredients_model.parallel import enable_context_parallel
    from ingredients_model.transformer import IngredientsTransformer3DModel

    model = IngredientsTransformer3DModel(**tiny_transformer_config())
    with pytest.raises(IngredientsError, match="process group"):
        enable_context_parallel(model)
