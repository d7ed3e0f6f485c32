"""Per-shot identity features: what the transformer needs from the people, independent of the timestep."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from ingredients_model.errors import IngredientsError


@dataclass(frozen=True)
class IdentityFeatures:
    """Timestep-independent features of N people, built once per shot by ``encode_identities``.

    - ``tokens``: facial-extractor tokens ``[B, N, Q, D]`` (released: Q = 32, D = 2048)
    - ``router_keys``: per routed block, the router's person keys ``[B, N, R]``
    - ``perceiver_keys`` / ``perceiver_values``: per routed block, the perceiver cross-attention keys and
      values of all people ``[B, heads, N * Q, head_dim]`` (person-major along the token axis)

    ``B`` is 1 (shared by the whole batch) or the batch size the features were encoded for; ``for_batch``
    tiles them to a larger batch, so both classifier-free-guidance halves share one encoding.
    """

    tokens: torch.Tensor
    router_keys: tuple[torch.Tensor, ...]
    perceiver_keys: tuple[torch.Tensor, ...]
    perceiver_values: tuple[torch.Tensor, ...]

    @property
    def num_people(self) -> int:
        return self.tokens.shape[1]

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def num_blocks(self) -> int:
        return len(self.router_keys)

    def _map(self, fn) -> IdentityFeatures:
        changes = {}
        for field in fields(self):
            value = getattr(self, field.name)
            changes[field.name] = tuple(fn(t) for t in value) if isinstance(value, tuple) else fn(value)
        return replace(self, **changes)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> IdentityFeatures:
        """Move and/or cast every tensor (no copy when nothing changes)."""
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def first(self, count: int) -> IdentityFeatures:
        """Features of the first ``count`` samples (views, no copy)."""
        return self._map(lambda t: t[:count])

    def for_batch(self, batch_size: int) -> IdentityFeatures:
        """Features for ``batch_size`` samples: sample ``i`` uses encoded sample ``i % self.batch_size``."""
        if batch_size == self.batch_size:
            return self
        if batch_size % self.batch_size:
            raise IngredientsError(
                f"Identity features were encoded for a batch of {self.batch_size}, which does not divide the "
                f"batch of {batch_size} video samples.",
                hint="Encode one set per sample (or a batch of 1 shared by all samples).",
            )
        if self.batch_size == 1:
            return self._map(lambda t: t.expand(batch_size, *t.shape[1:]))  # a view, no copy
        repeats = batch_size // self.batch_size
        return self._map(lambda t: t.repeat(repeats, *([1] * (t.dim() - 1))))
