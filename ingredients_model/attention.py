"""The joint text + video self-attention of the Ingredients blocks, through diffusers' attention dispatcher.

Same maths as diffusers' ``CogVideoXAttnProcessor2_0`` (text tokens first, QK layer norm, rotary embedding on
the video tokens only), but the attention op is ``diffusers.models.attention_dispatch.dispatch_attention_fn``.
That lets ``transformer.set_attention_backend("flash" | "sage" | "_native_cudnn" | ...)`` pick the kernel, and
lets ``enable_parallelism`` (context parallelism, see ``parallel.py``) run Ulysses or ring attention over the
sequence shards: the processor carries diffusers' ``_attention_backend`` and ``_parallel_config`` attributes.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import apply_rotary_emb

__all__ = ["IngredientsAttnProcessor"]


class IngredientsAttnProcessor:
    """Joint attention over ``[text, video]`` tokens; returns ``(video, text)`` like CogVideoX's processor.

    Under context parallelism each rank holds a contiguous slice of the text tokens and of the video tokens
    (and the matching slice of the rotary table); attention is permutation-invariant over keys, so the local
    ``[text_slice, video_slice]`` order gives the same result as the full ``[text, video]`` sequence.
    """

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text_seq_length = encoder_hidden_states.size(1)
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        batch_size, sequence_length, _ = hidden_states.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        # [B, S, heads, head_dim]: the dispatcher's layout
        query = attn.to_q(hidden_states).unflatten(2, (attn.heads, -1))
        key = attn.to_k(hidden_states).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:
            query[:, text_seq_length:] = apply_rotary_emb(
                query[:, text_seq_length:], image_rotary_emb, sequence_dim=1
            )
            if not attn.is_cross_attention:
                key[:, text_seq_length:] = apply_rotary_emb(
                    key[:, text_seq_length:], image_rotary_emb, sequence_dim=1
                )

        hidden_states = dispatch_attention_fn(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=0.0,
            is_causal=False,
            backend=self._attention_backend,
            parallel_config=self._parallel_config,
        )
        hidden_states = hidden_states.flatten(2, 3).type_as(query)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        encoder_hidden_states, hidden_states = hidden_states.split(
            [text_seq_length, sequence_length - text_seq_length], dim=1
        )
        return hidden_states, encoder_hidden_states
