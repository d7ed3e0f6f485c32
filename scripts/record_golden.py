"""Record the golden tensors of tests/ingredients_model/test_golden.py from the public Ingredients code.

    python scripts/record_golden.py --public-code PATH/TO/Ingredients

PATH is a checkout (or ``git archive``) of github.com/feizc/Ingredients. It is imported at run time only,
never by the package or the tests, in an environment that can import it (torch, diffusers 0.42, einops,
opencv). The released code hard-codes the widths of the released model; this script builds its classes at
the golden test's tiny widths by swapping in same-structured modules at construction time, and takes the
pipeline's rotary base grid (hard-coded 720x480, the released size) from the config (no file of PATH is
edited). It loads the weights the tests generate (tests/helpers/golden.py) into the released
classes, runs them on CPU in float32 and writes tests/fixtures/golden_*.safetensors with the seeds, shapes,
the weights' digest and the digest of the public files in the metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_FILES = (
    "models/transformer_ingredients.py",
    "models/local_facial_extractor.py",
    "models/pipeline_ingredients.py",
)


def public_code_digest(public: Path) -> str:
    digest = hashlib.sha256()
    for name in PUBLIC_FILES:
        digest.update(name.encode())
        digest.update((public / name).read_bytes())
    return digest.hexdigest()


def import_public(public: Path):
    """Import the released transformer and pipeline modules with tiny-width constructors patched in."""
    import torch
    from torch import nn

    from tests.helpers.golden import TRANSFORMER_CONFIG as cfg

    for name in PUBLIC_FILES:
        if not (public / name).is_file():
            sys.exit(f"{public / name} not found: pass the root of a feizc/Ingredients checkout.")
    sys.path.insert(0, str(public))
    transformer_module = importlib.import_module("models.transformer_ingredients")
    pipeline_module = importlib.import_module("models.pipeline_ingredients")
    released = sys.modules["local_facial_extractor"]

    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    face_dim = int(inner / 3 * 2)  # the released code's derivation
    width, id_dim, tokens = cfg["LFE_vit_dim"], cfg["LFE_id_dim"], cfg["LFE_num_id_token"]

    def mapping(in_dim: int, out_dim: int) -> nn.Sequential:
        # the released mapping structure; it hard-codes 1024 (ViT width = extractor width) and 1280 (ArcFace)
        return nn.Sequential(
            nn.Linear(in_dim, width),
            nn.LayerNorm(width),
            nn.LeakyReLU(),
            nn.Linear(width, width),
            nn.LayerNorm(width),
            nn.LeakyReLU(),
            nn.Linear(width, out_dim),
        )

    def local_facial_extractor():
        with torch.device("meta"):  # the hard-coded 1024-wide mappings are replaced below
            module = released.LocalFacialExtractor(
                dim=width,
                depth=cfg["LFE_depth"],
                dim_head=cfg["LFE_dim_head"],
                heads=cfg["LFE_num_heads"],
                num_id_token=tokens,
                num_queries=cfg["LFE_num_querie"],
                output_dim=face_dim,
                ff_mult=cfg["LFE_ff_mult"],
            )
        module = module.to_empty(device="cpu")
        for i in range(5):
            setattr(module, f"mapping_{i}", mapping(width, width))
        module.id_embedding_mapping = mapping(id_dim, width * tokens)
        return module

    def perceiver_cross_attention(*, dim, dim_head, heads, kv_dim):
        return released.PerceiverCrossAttention(
            dim=dim, dim_head=cfg["cross_attn_dim_head"], heads=cfg["cross_attn_num_heads"], kv_dim=kv_dim
        )

    def router():
        module = released.MultiIPRouter(dim=inner, id_dim=face_dim, id_length=cfg["LFE_num_querie"])
        module.to_q = nn.Linear(inner, face_dim, bias=False)  # the released inner width 2048 is hard-coded
        module.to_kv = nn.Linear(face_dim, face_dim, bias=False)
        return module

    def rotary_positional_embeddings(self, height, width, num_frames, device):
        # the released method hard-codes its base grid as 720x480 pixels, the released sample size; here that
        # size comes from the config (at the released config both are the same)
        step = self.vae_scale_factor_spatial * self.transformer.config.patch_size
        base_width = self.transformer.config.sample_width * self.vae_scale_factor_spatial // step
        base_height = self.transformer.config.sample_height * self.vae_scale_factor_spatial // step
        grid = (height // step, width // step)
        crops = pipeline_module.get_resize_crop_region_for_grid(grid, base_width, base_height)
        cos, sin = pipeline_module.get_3d_rotary_pos_embed(
            embed_dim=self.transformer.config.attention_head_dim,
            crops_coords=crops,
            grid_size=grid,
            temporal_size=num_frames,
        )
        return cos.to(device), sin.to(device)

    transformer_module.LocalFacialExtractor = local_facial_extractor
    transformer_module.PerceiverCrossAttention = perceiver_cross_attention
    transformer_module.MultiIPRouter = router
    pipeline_module.IngredientsPipeline._prepare_rotary_positional_embeddings = rotary_positional_embeddings
    return transformer_module, pipeline_module


def released_transformer(transformer_module, ours):
    """The released transformer class at the golden config, holding exactly our weights."""
    from tests.helpers.golden import TRANSFORMER_CONFIG

    accepted = inspect.signature(transformer_module.IngredientsTransformer3DModel.__init__).parameters
    config = {k: v for k, v in TRANSFORMER_CONFIG.items() if k in accepted}
    model = transformer_module.IngredientsTransformer3DModel(**config)
    model.load_state_dict(ours.state_dict(), strict=True)
    return model.eval()


def record_transformer(transformer_module, out: Path, public_digest: str) -> None:
    import torch
    from safetensors.torch import save_file

    from tests.helpers import golden

    ours = golden.ingredients_transformer()
    model = released_transformer(transformer_module, ours)
    conds, vits = golden.people()
    logits = []
    hooks = [
        router.register_forward_hook(lambda module, args, out: logits.append(out[0].detach().clone()))
        for router in model.router
    ]
    tensors = {}
    with torch.no_grad():
        single = model(**golden.transformer_inputs(1), id_cond=conds, id_vit_hidden=vits, return_dict=False)
        tensors["sample"] = single[0]
        for i, block_logits in enumerate(logits):
            tensors[f"router_logits.{i}"] = block_logits
        for hook in hooks:
            hook.remove()
        guided = model(**golden.transformer_inputs(2), id_cond=conds, id_vit_hidden=vits, return_dict=False)
        tensors["sample_guidance_batch"] = guided[0]
    metadata = {
        "seed": str(golden.SEED),
        "weights_sha256": golden.weights_digest(ours),
        "config": json.dumps(golden.TRANSFORMER_CONFIG),
        "shapes": json.dumps({k: list(v.shape) for k, v in tensors.items()}),
        "inputs": "golden.transformer_inputs(batch=1 for sample, 2 for sample_guidance_batch), "
        "golden.people(); router_logits.{i}: block i's logits of sample",
        **environment(public_digest),
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, out, metadata=metadata)
    print(f"{out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in tensors.items()))


def record_pipeline(pipeline_module, transformer_module, out: Path, public_digest: str) -> None:
    import torch
    from safetensors.torch import save_file

    from tests.helpers import golden

    ours = golden.ingredients_transformer()
    vae = golden.vae()
    pipe = pipeline_module.IngredientsPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=vae,
        transformer=released_transformer(transformer_module, ours),
        scheduler=golden.scheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    tensors = {}
    for guidance in golden.GUIDANCES:
        with torch.no_grad():
            latents = pipe(
                **golden.pipeline_inputs(), guidance_scale=guidance, generator=golden.generator()
            ).frames
        tensors[f"latents_guidance_{guidance:g}"] = latents
    metadata = {
        "seed": str(golden.SEED),
        "weights_sha256": golden.weights_digest(ours),
        "vae_weights_sha256": golden.weights_digest(vae),
        "config": json.dumps(golden.TRANSFORMER_CONFIG),
        "shapes": json.dumps({k: list(v.shape) for k, v in tensors.items()}),
        "inputs": f"golden.pipeline_inputs(), generator=golden.generator(), {golden.STEPS} steps, "
        f"guidance {golden.GUIDANCES}",
        **environment(public_digest),
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, out, metadata=metadata)
    print(f"{out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in tensors.items()))


def environment(public_digest: str) -> dict[str, str]:
    import diffusers
    import torch

    return {
        "public_code_sha256": public_digest,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--public-code", type=Path, required=True, help="root of a feizc/Ingredients checkout"
    )
    args = parser.parse_args()
    public = args.public_code.resolve()
    sys.path.insert(0, str(ROOT))
    import torch

    from tests.helpers import golden

    torch.set_grad_enabled(False)
    transformer_module, pipeline_module = import_public(public)
    digest = public_code_digest(public)
    golden.FIXTURES.mkdir(parents=True, exist_ok=True)
    record_transformer(transformer_module, golden.TRANSFORMER_FIXTURE, digest)
    record_pipeline(pipeline_module, transformer_module, golden.PIPELINE_FIXTURE, digest)


if __name__ == "__main__":
    main()
