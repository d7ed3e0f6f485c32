"""The Ingredients ID router: which person's facial features each video token receives, and its routing loss.

Layout (released checkpoint, ``router.{i}``; no linear layer has a bias):

- ``norm1``: LayerNorm over the facial-extractor token width (``id_dim``, 2048 released)
- ``norm2``: LayerNorm over the video hidden width (``dim``, 3072 released)
- ``id_merge``: Linear(``id_length`` → 1) that merges a person's 32 facial tokens into one vector
- ``to_q``: Linear(``dim`` → ``inner_dim``) for the video tokens
- ``to_kv``: Linear(``id_dim`` → ``inner_dim``) for the merged person vector (it yields a key only)

Maths (as the released code, ``MultiIPRouter`` in ``models/local_facial_extractor.py`` of feizc/Ingredients,
computes it; checked against it by the golden tests in ``tests/ingredients_model/test_golden.py``):

    g_n = to_kv(id_merge(norm1(F_n)ᵀ))          one key per person n (F_n: [id_length, id_dim])
    f_l = to_q(norm2(H_l))                       one query per video token l
    logits[l, n] = f_l · g_n                     a plain dot product: no 1/sqrt(d) factor, as released
    soft: w = softmax_n(logits)   (released behaviour)      hard: w = one_hot(argmax_n logits)   (paper)

The routing loss is the cross-entropy of ``logits`` against per-token person indices (``-1`` = background,
ignored), averaged over the routed blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ingredients_model import released
from ingredients_model.errors import IngredientsError

RouterMode = Literal["soft", "hard"]
ROUTER_MODES: tuple[str, ...] = ("soft", "hard")
BACKGROUND = -1

CfgRouting = Literal["released", "per_branch"]
CFG_ROUTINGS: tuple[str, ...] = released.CFG_ROUTINGS
DEFAULT_CFG_ROUTING: CfgRouting = released.CFG_ROUTING  # type: ignore[assignment]
"""How the face injection is computed for a classifier-free-guidance batch ``[unconditional; conditional]``.

- ``released``: routed and projected from the unconditional half's hidden states, and that same injection is
  added to both halves. This is what the released code does (its router and perceiver read batch item 0 only,
  and with one prompt item 0 is the unconditional half).
- ``per_branch``: each half is routed and projected with its own hidden states.
"""


class IDRouter(nn.Module):
    """Per-block ID router (released name ``router.{i}``); see the module docstring for the maths."""

    def __init__(self, dim: int, id_dim: int, id_length: int, inner_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(id_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.id_merge = nn.Linear(id_length, 1, bias=False)
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(id_dim, inner_dim, bias=False)

    def identity_keys(self, face_tokens: torch.Tensor) -> torch.Tensor:
        """Person keys ``[..., N, inner_dim]`` from facial tokens ``[..., N, id_length, id_dim]``."""
        merged = self.id_merge(self.norm1(face_tokens).transpose(-1, -2)).squeeze(-1)
        return self.to_kv(merged)

    def logits(self, hidden_states: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Routing logits ``[B, L, N]`` for video tokens ``[B, L, dim]``, person keys ``[B, N, inner]``."""
        query = self.to_q(self.norm2(hidden_states))
        return query @ keys.transpose(-1, -2)

    def forward(self, hidden_states: torch.Tensor, face_tokens: torch.Tensor) -> torch.Tensor:
        """Routing logits from raw facial tokens ``[B, N, id_length, id_dim]``."""
        return self.logits(hidden_states, self.identity_keys(face_tokens))


def check_router_mode(mode: str) -> RouterMode:
    """Return ``mode`` if it is a router mode, else raise IngredientsError."""
    if mode not in ROUTER_MODES:
        raise IngredientsError(
            f"Unknown router mode {mode!r}.", hint="Use 'soft' (released) or 'hard' (paper)."
        )
    return mode  # type: ignore[return-value]


def check_cfg_routing(value: str) -> CfgRouting:
    """Return ``value`` if it is a CFG routing, else raise IngredientsError."""
    if value not in CFG_ROUTINGS:
        raise IngredientsError(
            f"Unknown cfg_routing {value!r}.",
            hint="Use 'released' (as the released code) or 'per_branch' (each guidance half routed itself).",
        )
    return value  # type: ignore[return-value]


def routing_weights(logits: torch.Tensor, mode: RouterMode) -> torch.Tensor:
    """Per-token person weights ``[B, L, N]``: softmax (``soft``) or one-hot argmax (``hard``)."""
    if mode == "soft":
        return torch.softmax(logits.float(), dim=-1).to(logits.dtype)
    return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)


def flatten_routing_masks(
    masks: torch.Tensor, batch_size: int, num_tokens: int, num_people: int
) -> torch.Tensor:
    """Check ``[B, F, H/p, W/p]`` person-index masks and flatten them to ``[B, L]`` in video-token order."""
    if masks.dtype.is_floating_point or masks.dtype == torch.bool:
        raise IngredientsError(
            f"routing_masks must be an integer tensor, got {masks.dtype}.",
            hint="Pass a LongTensor of person indices (0..N-1) or -1 for background.",
        )
    if masks.shape[0] != batch_size or masks[0].numel() != num_tokens:
        raise IngredientsError(
            f"routing_masks has shape {tuple(masks.shape)}, expected [{batch_size}, frames, height, width] "
            f"with frames*height*width = {num_tokens} latent patches.",
            hint="Build the masks at latent resolution divided by the patch size.",
        )
    flat = masks.reshape(batch_size, num_tokens).long()
    if bool(((flat < BACKGROUND) | (flat >= num_people)).any()):
        raise IngredientsError(
            f"routing_masks holds values outside -1..{num_people - 1} for {num_people} people.",
            hint="Use the person's index (left to right) or -1 for background.",
        )
    return flat


def routing_loss(block_logits: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Mean over routed blocks of the token cross-entropy (``-1`` ignored); 0 when no token is labelled."""
    if not block_logits:
        raise IngredientsError("No routed block produced logits.", hint="Pass identities with routing_masks.")
    labelled = (targets != BACKGROUND).sum()
    losses = []
    for logits in block_logits:
        total = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=BACKGROUND,
            reduction="sum",
        )
        losses.append(total / labelled.clamp(min=1))
    return torch.stack(losses).mean()
