"""The two evaluation protocols, by name.

- ``released``: the public Ingredients metric scripts' rules, reproduced one by one so that numbers can be put
  beside the paper's Table 1 (:mod:`ingredients_model.metrics.released`).
- ``strict``: ours, for multi-person production: every person must be present and recognisable in every
  sampled frame (greedy one-to-one matching, minimum over people, all faces;
  :mod:`ingredients_model.metrics.face_similarity`, :mod:`ingredients_model.metrics.matching`).
"""

from __future__ import annotations

from typing import Literal, get_args

from ingredients_model.errors import IngredientsError

ProtocolChoice = Literal["released", "strict", "both"]
PROTOCOL_CHOICES: tuple[str, ...] = get_args(ProtocolChoice)
PROTOCOLS = PROTOCOL_CHOICES[:2]
DEFAULT_PROTOCOL = "both"
PROTOCOL_LABELS = {
    "released": "released (the public Ingredients scripts: buffalo_l, 2 largest faces, best pair, 24 frames)",
    "strict": "strict (ours: every person, greedy one-to-one, minimum over people, all faces)",
}


def expand_protocol(choice: str) -> tuple[str, ...]:
    """``released`` / ``strict`` → that one; ``both`` → both, released first."""
    if choice == "both":
        return PROTOCOLS
    if choice not in PROTOCOLS:
        raise IngredientsError(f"unknown protocol {choice!r}", f"Use one of: {', '.join(PROTOCOL_CHOICES)}.")
    return (choice,)
