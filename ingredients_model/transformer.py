"""IngredientsTransformer3DModel: CogVideoX-5B-I2V DiT + facial extractor + perceiver attention + ID router.

Built from diffusers' ConsisID pieces (``ConsisIDBlock``, ``LocalFacialExtractor``,
``PerceiverCrossAttention``, ``CogVideoXPatchEmbed``) so that parameter names and shapes equal the released
Ingredients checkpoint; only the router and the multi-identity forward are new.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.attention import AttentionMixin
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.embeddings import CogVideoXPatchEmbed, TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNorm
from diffusers.models.transformers.consisid_transformer_3d import (
    ConsisIDBlock,
    LocalFacialExtractor,
    PerceiverCrossAttention,
)
from diffusers.utils import BaseOutput, apply_lora_scale
from torch import nn

from ingredients_model import released
from ingredients_model.attention import IngredientsAttnProcessor
from ingredients_model.errors import IngredientsError
from ingredients_model.identity import IdentityFeatures
from ingredients_model.router import (
    IDRouter,
    RouterMode,
    check_cfg_routing,
    check_router_mode,
    flatten_routing_masks,
    routing_loss,
    routing_weights,
)


@dataclass
class IngredientsTransformerOutput(BaseOutput):
    """``sample``: model prediction ``[B, F, C, H, W]``.

    When routing masks were given: ``routing_loss`` (scalar) and ``routing_logits``, one ``[B, L, N]`` tensor
    per routed block (for other routing losses).
    """

    sample: torch.Tensor
    routing_loss: torch.Tensor | None = None
    routing_logits: tuple[torch.Tensor, ...] | None = None


class IngredientsBlock(ConsisIDBlock):
    """ConsisID/CogVideoX block that also applies the identity injection that follows it, when given one.

    Keeping the injection inside the block lets block-level caches (diffusers' first-block cache) skip it
    together with the block. Returns ``(hidden_states, encoder_hidden_states)``, plus the routing logits when
    the injection computed them (tensors only, as diffusers' cache and parallel hooks expect). Its
    self-attention goes through diffusers' attention dispatcher (``attention.IngredientsAttnProcessor``), so
    attention backends and context parallelism apply to it.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.attn1.set_processor(IngredientsAttnProcessor())

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        face_injection: Any = None,
    ) -> tuple[torch.Tensor, ...]:
        hidden_states, encoder_hidden_states = super().forward(
            hidden_states, encoder_hidden_states, temb, image_rotary_emb
        )
        if face_injection is None:
            return hidden_states, encoder_hidden_states
        hidden_states, logits = face_injection(hidden_states)
        if logits is None:
            return hidden_states, encoder_hidden_states
        return hidden_states, encoder_hidden_states, logits


TransformerBlockRegistry.register(
    model_class=IngredientsBlock,
    metadata=TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=1),
)


def perceiver_identity_kv(
    attn: PerceiverCrossAttention, face_tokens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Perceiver keys and values ``[B, heads, N * Q, head_dim]`` for facial tokens ``[B, N, Q, D]``."""
    batch, people, queries, _ = face_tokens.shape
    key, value = attn.to_kv(attn.norm1(face_tokens)).chunk(2, dim=-1)

    def heads(t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(batch, people, queries, attn.heads, attn.dim_head).permute(0, 3, 1, 2, 4)
        return t.reshape(batch, attn.heads, people * queries, attn.dim_head)

    return heads(key), heads(value)


def routed_perceiver_attention(
    attn: PerceiverCrossAttention,
    hidden_states: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    num_people: int,
    weights: torch.Tensor | None,
) -> torch.Tensor:
    """``Σ_n w_n · attn(F_n, H)`` with one query projection and one output projection for all N people.

    Same maths as diffusers' ``PerceiverCrossAttention.forward`` per person (scale ``head_dim**-0.25`` on
    both sides, float softmax over each person's tokens); since ``to_out`` has no bias, the routing weights
    ``[B, L, N]`` are applied to the attention probabilities before the shared value and output projections.
    """
    batch, seq_len, _ = hidden_states.shape
    query = attn.to_q(attn.norm2(hidden_states))
    query = query.reshape(batch, seq_len, attn.heads, attn.dim_head).transpose(1, 2)
    scale = 1 / math.sqrt(math.sqrt(attn.dim_head))
    scores = (query * scale) @ (keys * scale).transpose(-2, -1)  # [B, heads, L, N*Q]
    scores = scores.unflatten(-1, (num_people, -1))
    probs = torch.softmax(scores.float(), dim=-1).type(scores.dtype)
    if weights is not None:
        probs = probs * weights[:, None, :, :, None]
    out = probs.flatten(-2) @ values  # [B, heads, L, head_dim]
    out = out.permute(0, 2, 1, 3).reshape(batch, seq_len, -1)
    return attn.to_out(out)


def inject_faces(
    router: IDRouter,
    perceiver: PerceiverCrossAttention,
    router_keys: torch.Tensor,
    perceiver_keys: torch.Tensor,
    perceiver_values: torch.Tensor,
    num_people: int,
    mode: RouterMode,
    scale: float,
    need_logits: bool,
    from_first_half: bool,
    hidden_states: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``H + α Σ_n w_n PCA(F_n, H)`` after one routed block, and the routing logits (computed when routing
    or asked for). ``router_keys``, ``perceiver_keys`` and ``perceiver_values`` are that block's entries of
    ``IdentityFeatures``.

    ``from_first_half``: route and project from the first half of the batch only (the identity features hold
    that half's) and add the same injection to both halves (``cfg_routing="released"``).
    """
    source = hidden_states[: hidden_states.shape[0] // 2] if from_first_half else hidden_states
    logits = None
    if num_people > 1 or need_logits:
        logits = router.logits(source, router_keys)
    weights = routing_weights(logits, mode) if num_people > 1 else None  # one person: weight exactly 1
    out = routed_perceiver_attention(perceiver, source, perceiver_keys, perceiver_values, num_people, weights)
    if from_first_half:
        out = torch.cat([out, out])
    return hidden_states + scale * out, logits


class IngredientsTransformer3DModel(ModelMixin, AttentionMixin, ConfigMixin, PeftAdapterMixin, CacheMixin):
    """The Ingredients multi-identity video transformer (released layout, any number of people).

    Built from the released ``transformer/config.json`` unchanged (its ``_class_name`` says
    ``ConsisIDTransformer3DModel``). Defaults are the released values.

    Released config keys kept for compatibility that do not shape any weight (as in the released code):
    ``LFE_num_tokens``, ``LFE_output_dim``, ``LFE_heads``. The facial-extractor output width, the perceiver
    key/value width and the router identity/inner widths are all ``int(inner_dim / 3 * 2)`` (2048 released),
    as the released code derives them.

    Extra keys (diffusers ConsisID names, released defaults) that let tests shrink the face modules:
    ``LFE_id_dim`` (1280), ``LFE_vit_dim`` (1024), ``LFE_depth`` (10), ``LFE_dim_head`` (64),
    ``LFE_num_heads`` (16), ``LFE_num_id_token`` (5), ``LFE_num_querie`` (32, also the router's
    ``id_length``), ``LFE_ff_mult`` (4), ``LFE_num_scale`` (5), ``cross_attn_dim_head`` (128),
    ``cross_attn_num_heads`` (16).

    Face injection follows blocks ``0, interval, 2·interval, …`` (``num_layers // cross_attn_interval``):
    ``H ← H + α · Σ_n w_n · PerceiverCrossAttention_k(F_n, H)`` with router weights ``w`` (see ``router.py``),
    per sample, or for a guidance batch from its unconditional half as released (``cfg_routing``). The
    released weights were trained with two people; more people use the same router unchanged. Run-time
    settings: ``set_routing(mode, local_face_scale)`` or per call ``router_mode`` / ``local_face_scale``.

    ``sample_frames`` (49 released) is the frame count the learned positional embedding was trained for; for
    any other count diffusers' patch embedding silently uses sin/cos positional embeddings instead.
    """

    _supports_gradient_checkpointing = True
    _skip_layerwise_casting_patterns: ClassVar[list[str]] = ["patch_embed", "norm"]
    _no_split_modules: ClassVar[list[str]] = ["IngredientsBlock", "CogVideoXPatchEmbed"]
    _repeated_blocks: ClassVar[list[str]] = ["IngredientsBlock"]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 48,
        attention_head_dim: int = 64,
        in_channels: int = 32,
        out_channels: int = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        text_embed_dim: int = 4096,
        num_layers: int = 42,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = released.MAX_FRAMES,
        patch_size: int = 2,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = True,
        use_learned_positional_embeddings: bool = True,
        is_train_face: bool = True,
        is_kps: bool = False,
        cross_attn_interval: int = 2,
        local_face_scale: float = 1.0,
        LFE_num_tokens: int = 32,
        LFE_output_dim: int = 768,
        LFE_heads: int = 12,
        LFE_id_dim: int = 1280,
        LFE_vit_dim: int = 1024,
        LFE_depth: int = 10,
        LFE_dim_head: int = 64,
        LFE_num_heads: int = 16,
        LFE_num_id_token: int = 5,
        LFE_num_querie: int = 32,
        LFE_ff_mult: int = 4,
        LFE_num_scale: int = 5,
        cross_attn_dim_head: int = 128,
        cross_attn_num_heads: int = 16,
    ):
        super().__init__()
        inner_dim = num_attention_heads * attention_head_dim
        if not use_rotary_positional_embeddings and use_learned_positional_embeddings:
            raise IngredientsError(
                "use_learned_positional_embeddings requires use_rotary_positional_embeddings.",
                hint="Use the released transformer config (both true).",
            )

        self.patch_embed = CogVideoXPatchEmbed(
            patch_size=patch_size,
            in_channels=in_channels,
            embed_dim=inner_dim,
            text_embed_dim=text_embed_dim,
            bias=True,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_positional_embeddings=not use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
        )
        self.embedding_dropout = nn.Dropout(dropout)
        self.time_proj = Timesteps(inner_dim, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(inner_dim, time_embed_dim, timestep_activation_fn)
        self.transformer_blocks = nn.ModuleList(
            [
                IngredientsBlock(
                    dim=inner_dim,
                    num_attention_heads=num_attention_heads,
                    attention_head_dim=attention_head_dim,
                    time_embed_dim=time_embed_dim,
                    dropout=dropout,
                    activation_fn=activation_fn,
                    attention_bias=attention_bias,
                    norm_elementwise_affine=norm_elementwise_affine,
                    norm_eps=norm_eps,
                )
                for _ in range(num_layers)
            ]
        )
        self.norm_final = nn.LayerNorm(inner_dim, norm_eps, norm_elementwise_affine)
        self.norm_out = AdaLayerNorm(
            embedding_dim=time_embed_dim,
            output_dim=2 * inner_dim,
            norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps,
            chunk_dim=1,
        )
        self.proj_out = nn.Linear(inner_dim, patch_size * patch_size * out_channels)

        if is_train_face:
            face_dim = int(inner_dim / 3 * 2)  # the released code's LFE output / perceiver kv / router width
            num_face_blocks = num_layers // cross_attn_interval
            self.local_facial_extractor = LocalFacialExtractor(
                id_dim=LFE_id_dim,
                vit_dim=LFE_vit_dim,
                depth=LFE_depth,
                dim_head=LFE_dim_head,
                heads=LFE_num_heads,
                num_id_token=LFE_num_id_token,
                num_queries=LFE_num_querie,
                output_dim=face_dim,
                ff_mult=LFE_ff_mult,
                num_scale=LFE_num_scale,
            )
            self.perceiver_cross_attention = nn.ModuleList(
                [
                    PerceiverCrossAttention(
                        dim=inner_dim,
                        dim_head=cross_attn_dim_head,
                        heads=cross_attn_num_heads,
                        kv_dim=face_dim,
                    )
                    for _ in range(num_face_blocks)
                ]
            )
            self.router = nn.ModuleList(
                [
                    IDRouter(dim=inner_dim, id_dim=face_dim, id_length=LFE_num_querie, inner_dim=face_dim)
                    for _ in range(num_face_blocks)
                ]
            )

        self.gradient_checkpointing = False
        self.router_mode: RouterMode = "soft"
        self.local_face_scale = local_face_scale

    # ------------------------------------------------------------------ run-time settings

    def set_routing(self, mode: str = "soft", local_face_scale: float | None = None) -> None:
        """Default router mode ('soft' = released, 'hard' = paper argmax) and α for later calls."""
        self.router_mode = check_router_mode(mode)
        if local_face_scale is not None:
            self.local_face_scale = float(local_face_scale)

    @property
    def num_face_blocks(self) -> int:
        return len(self.router) if self.config.is_train_face else 0

    @property
    def required_text_length(self) -> int | None:
        """Text tokens the patch embedding needs: ``max_text_seq_length`` when positional embeddings (learned,
        or sin/cos without rotary) span text and video, as released (226); ``None`` (any) with rotary only."""
        cfg = self.config
        if cfg.use_learned_positional_embeddings or not cfg.use_rotary_positional_embeddings:
            return cfg.max_text_seq_length
        return None

    def check_text_embeddings(self, embeds: torch.Tensor, name: str = "encoder_hidden_states") -> None:
        """Raise IngredientsError unless ``embeds`` is ``[B, tokens, text_embed_dim]`` with the token count
        this model accepts (``required_text_length``)."""
        cfg = self.config
        if (
            not isinstance(embeds, torch.Tensor)
            or embeds.dim() != 3
            or embeds.shape[-1] != cfg.text_embed_dim
        ):
            shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
            raise IngredientsError(
                f"{name} has shape {shape}, expected [batch, tokens, {cfg.text_embed_dim}].",
                hint="Encode the text with this model folder's text encoder (pipe.encode_prompt).",
            )
        length = self.required_text_length
        if length is not None and embeds.shape[1] != length:
            raise IngredientsError(
                f"{name} holds {embeds.shape[1]} text tokens; this transformer takes exactly {length} "
                "(its positional embedding spans text and video).",
                hint=f"Encode the prompt with max_sequence_length={length}.",
            )

    # ------------------------------------------------------------------ identities

    def _require_face_modules(self) -> None:
        if not self.config.is_train_face:
            raise IngredientsError(
                "This transformer has no face modules (is_train_face is false); it cannot take identities.",
                hint="Use an Ingredients transformer folder (config is_train_face: true).",
            )

    @apply_lora_scale("attention_kwargs")
    def encode_identities(
        self,
        id_cond: list[torch.Tensor],
        id_vit_hidden: list[list[torch.Tensor]],
        attention_kwargs: dict[str, Any] | None = None,
    ) -> IdentityFeatures:
        """Everything timestep-independent about N people, computed once per shot.

        ``id_cond``: one tensor per person, ``[B or 1, id_dim]`` (or ``[id_dim]``); ``id_vit_hidden``: per
        person a list of ``LFE_num_scale`` tensors ``[B or 1, tokens, vit_dim]`` (or ``[tokens, vit_dim]``).
        Persons given with batch 1 are shared by every sample. Runs in the model's dtype and device.
        ``attention_kwargs``: as in ``forward`` (``{"scale": s}`` scales LoRA layers).
        """
        self._require_face_modules()
        cfg = self.config
        if not isinstance(id_cond, list | tuple) or not isinstance(id_vit_hidden, list | tuple):
            raise IngredientsError(
                "id_cond and id_vit_hidden must be lists with one entry per person.",
                hint="Pass [person_1, person_2, ...] even for a single person.",
            )
        if not id_cond or len(id_cond) != len(id_vit_hidden):
            raise IngredientsError(
                f"Got {len(id_cond)} id_cond tensors and {len(id_vit_hidden)} id_vit_hidden lists.",
                hint="Give one of each per person (at least one person).",
            )
        param = self.local_facial_extractor.latents
        conds, vits = [], []
        for person, (cond, hidden) in enumerate(zip(id_cond, id_vit_hidden, strict=True)):
            cond = cond.unsqueeze(0) if cond.dim() == 1 else cond
            hidden = [h.unsqueeze(0) if h.dim() == 2 else h for h in hidden]
            if cond.dim() != 2 or cond.shape[-1] != cfg.LFE_id_dim:
                raise IngredientsError(
                    f"Person {person}: id_cond has shape {tuple(cond.shape)}, "
                    f"expected [B, {cfg.LFE_id_dim}].",
                    hint="Use the face encoder that belongs to this model folder.",
                )
            if len(hidden) != cfg.LFE_num_scale or any(
                h.dim() != 3 or h.shape[-1] != cfg.LFE_vit_dim for h in hidden
            ):
                raise IngredientsError(
                    f"Person {person}: id_vit_hidden must be {cfg.LFE_num_scale} tensors "
                    f"[B, tokens, {cfg.LFE_vit_dim}].",
                    hint="Use the face encoder that belongs to this model folder.",
                )
            if any(h.shape[0] != cond.shape[0] for h in hidden):
                raise IngredientsError(
                    f"Person {person}: id_cond and id_vit_hidden have different batch sizes."
                )
            conds.append(cond.to(device=param.device, dtype=param.dtype))
            vits.append([h.to(device=param.device, dtype=param.dtype) for h in hidden])

        batch = max(c.shape[0] for c in conds)
        if any(c.shape[0] not in (1, batch) for c in conds):
            raise IngredientsError(
                f"People have batch sizes {[c.shape[0] for c in conds]}.",
                hint="Use batch 1 or one common batch size.",
            )
        people = len(conds)
        cond_all = torch.cat([c.expand(batch, -1) for c in conds])
        vit_all = [torch.cat([v[s].expand(batch, -1, -1) for v in vits]) for s in range(cfg.LFE_num_scale)]
        tokens = self.local_facial_extractor(cond_all, vit_all)  # [N*B, Q, D], person-major
        tokens = tokens.unflatten(0, (people, batch)).transpose(0, 1)  # [B, N, Q, D]
        kv = [perceiver_identity_kv(attn, tokens) for attn in self.perceiver_cross_attention]
        return IdentityFeatures(
            tokens=tokens,
            router_keys=tuple(router.identity_keys(tokens) for router in self.router),
            perceiver_keys=tuple(k for k, _ in kv),
            perceiver_values=tuple(v for _, v in kv),
        )

    def _face_injection(
        self,
        index: int,
        identity: IdentityFeatures,
        mode: RouterMode,
        scale: float,
        need_logits: bool,
        from_first_half: bool,
    ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]:
        """The injection after routed block ``index`` (``inject_faces``) as a function of the hidden states.

        It holds that block's router and perceiver and the people's features for it, not the index: a block
        compiled with ``compile_repeated_blocks`` then sees the same code and argument types at every routed
        block, so dynamo compiles one graph for all of them (an index would be a constant of each graph).
        """
        return functools.partial(
            inject_faces,
            self.router[index],
            self.perceiver_cross_attention[index],
            identity.router_keys[index],
            identity.perceiver_keys[index],
            identity.perceiver_values[index],
            identity.num_people,
            mode,
            scale,
            need_logits,
            from_first_half,
        )

    # ------------------------------------------------------------------ forward

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: int | float | torch.Tensor,
        timestep_cond: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        id_cond: list[torch.Tensor] | None = None,
        id_vit_hidden: list[list[torch.Tensor]] | None = None,
        identity: IdentityFeatures | None = None,
        routing_masks: torch.Tensor | None = None,
        router_mode: str | None = None,
        local_face_scale: float | None = None,
        cfg_routing: str | None = None,
        return_dict: bool = True,
    ) -> IngredientsTransformerOutput | tuple[torch.Tensor, ...]:
        """Denoise ``hidden_states`` ``[B, F, C, H, W]`` given text ``[B, T, text_dim]`` and N identities.

        Identities come either raw (``id_cond`` / ``id_vit_hidden``, see ``encode_identities``; a single
        ``id_cond`` tensor with a list of scale tensors is one person, as diffusers' ConsisIDPipeline passes
        them) or precomputed (``identity``); with neither, no face features are injected. ``routing_masks``
        ``[B, F, H/p, W/p]`` (person index or -1) adds the routing loss to the output.

        ``cfg_routing``: ``None``/``"per_branch"`` routes every sample with its own hidden states;
        ``"released"`` treats the batch as a guidance batch ``[unconditional; conditional]`` and adds the
        injection computed from the unconditional half to both halves, as the released code does (see
        ``router.CFG_ROUTINGS``). Returns ``IngredientsTransformerOutput``, or ``(sample,)`` /
        ``(sample, routing_loss)`` as a plain tuple.
        """
        if isinstance(id_cond, torch.Tensor):  # diffusers ConsisID convention: one person
            id_cond, id_vit_hidden = [id_cond], [id_vit_hidden]
        if identity is not None and (id_cond is not None or id_vit_hidden is not None):
            raise IngredientsError("Pass either identity= or id_cond/id_vit_hidden, not both.")
        if identity is None and (id_cond is not None or id_vit_hidden is not None):
            if id_cond is None or id_vit_hidden is None:
                raise IngredientsError("id_cond and id_vit_hidden must be given together.")
            identity = self.encode_identities(id_cond, id_vit_hidden)
        batch_size, num_frames, _, height, width = hidden_states.shape
        p = self.config.patch_size
        self.check_text_embeddings(encoder_hidden_states)
        from_first_half = cfg_routing is not None and check_cfg_routing(cfg_routing) == "released"
        if identity is not None:
            self._require_face_modules()
            if identity.num_blocks != self.num_face_blocks:
                raise IngredientsError(
                    f"Identity features hold {identity.num_blocks} blocks, "
                    f"this model routes {self.num_face_blocks}.",
                    hint="Encode the identities with this model's encode_identities.",
                )
            identity = identity.for_batch(batch_size).to(
                device=hidden_states.device, dtype=hidden_states.dtype
            )
            if from_first_half:
                if batch_size % 2:
                    raise IngredientsError(
                        f"cfg_routing='released' needs a guidance batch [unconditional; conditional], "
                        f"got an odd batch of {batch_size}.",
                        hint="Use cfg_routing='per_branch' (or None) outside classifier-free guidance.",
                    )
                identity = identity.first(batch_size // 2)
        targets = None
        if routing_masks is not None:
            if self._parallel_config is not None:
                raise IngredientsError(
                    "routing_masks (training) cannot be used under context parallelism.",
                    hint="Train without enable_context_parallel.",
                )
            if identity is None:
                raise IngredientsError(
                    "routing_masks need identities.", hint="Pass id_cond/id_vit_hidden or identity."
                )
            if from_first_half:
                raise IngredientsError(
                    "routing_masks (training) route every sample itself; they cannot be combined with "
                    "cfg_routing='released'.",
                    hint="Leave cfg_routing unset when training.",
                )
            num_tokens = num_frames * (height // p) * (width // p)
            targets = flatten_routing_masks(
                routing_masks.to(hidden_states.device), batch_size, num_tokens, identity.num_people
            )
        mode = check_router_mode(router_mode) if router_mode is not None else self.router_mode
        scale = self.local_face_scale if local_face_scale is None else float(local_face_scale)

        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)
        hidden_states = self.embedding_dropout(self.patch_embed(encoder_hidden_states, hidden_states))
        text_seq_length = encoder_hidden_states.shape[1]
        encoder_hidden_states = hidden_states[:, :text_seq_length]
        hidden_states = hidden_states[:, text_seq_length:]

        block_logits = []
        face_index = 0
        for i, block in enumerate(self.transformer_blocks):
            injection = None
            if (
                identity is not None
                and i % self.config.cross_attn_interval == 0
                and face_index < self.num_face_blocks
            ):
                injection = self._face_injection(
                    face_index, identity, mode, scale, targets is not None, from_first_half
                )
                face_index += 1
            args = (hidden_states, encoder_hidden_states, emb, image_rotary_emb, injection)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                out = self._gradient_checkpointing_func(block, *args)
            else:
                out = block(*args)
            hidden_states, encoder_hidden_states = out[0], out[1]
            if len(out) > 2 and out[2] is not None:
                block_logits.append(out[2])

        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        hidden_states = self.norm_final(hidden_states)[:, text_seq_length:]
        hidden_states = self.proj_out(self.norm_out(hidden_states, temb=emb))
        output = hidden_states.reshape(batch_size, num_frames, height // p, width // p, -1, p, p)
        output = output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)

        if targets is None:
            return IngredientsTransformerOutput(sample=output) if return_dict else (output,)
        loss = routing_loss(block_logits, targets)
        if not return_dict:
            return output, loss
        return IngredientsTransformerOutput(
            sample=output, routing_loss=loss, routing_logits=tuple(block_logits)
        )

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any):
        """diffusers ``from_pretrained`` with strict keys: missing, unexpected or mismatched tensors raise.

        Loads the released folder as it is (config ``_class_name: ConsisIDTransformer3DModel``, bf16 shards);
        the weights are cast to ``torch_dtype`` (default float32).
        """
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, output_loading_info=True, **kwargs
        )
        problems = {k: v for k, v in info.items() if k != "error_msgs" and v}
        if problems or info.get("error_msgs"):
            details = "; ".join(
                f"{k}: {', '.join(map(str, v[:5]))}{' …' if len(v) > 5 else ''}" for k, v in problems.items()
            )
            raise IngredientsError(
                f"The transformer weights in {pretrained_model_name_or_path} do not match the Ingredients "
                "layout "
                f"({details or info.get('error_msgs')}).",
                hint="Download the model folder again, or check its transformer/config.json.",
            )
        return (model, info) if want_info else model
