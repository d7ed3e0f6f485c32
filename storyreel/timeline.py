"""How shots sit in the reel: the vocabulary and timing rules the story checks and the reel share.

A shot's transition describes how it passes INTO THE NEXT shot. ``cut`` joins the clips; ``crossfade``
and ``fade`` (through black) overlap the two clips by the transition's length. On the last shot a
crossfade has nothing to cross into and is ignored, and a fade fades the reel out to black. A
transition may take at most what the shot's incoming transition leaves of it, and at most the whole
next shot. The story checks apply these rules in seconds, the reel assembly in frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar, get_args

__all__ = [
    "BURNED_CAPTIONS",
    "CAPTION_MODES",
    "TRANSITIONS",
    "CaptionMode",
    "Join",
    "TransitionType",
    "joins",
    "room",
]

TransitionType = Literal["cut", "crossfade", "fade"]
TRANSITIONS: tuple[str, ...] = get_args(TransitionType)
CaptionMode = Literal["burn", "subtitles", "both", "none"]
CAPTION_MODES: tuple[str, ...] = get_args(CaptionMode)
BURNED_CAPTIONS: tuple[str, ...] = ("burn", "both")
"""Caption modes that burn the captions into the reel's picture."""

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Join(Generic[N]):
    """How one shot passes on: into the next shot or, for the last shot, out of the reel."""

    kind: str
    """cut, crossfade or fade."""
    seconds: N
    """The transition's length as written (seconds or frames)."""
    last: bool
    """The shot is the last one."""

    @property
    def applies(self) -> bool:
        """Whether the transition does anything: not a cut, not a crossfade after the last shot."""
        return self.kind != "cut" and not (self.last and self.kind == "crossfade")

    @property
    def overlap(self) -> N:
        """How long this shot is meant to overlap the next one (0 for the last shot)."""
        return self.seconds if self.applies and not self.last else type(self.seconds)(0)

    @property
    def fade_out(self) -> N:
        """How long the reel is meant to fade out at the end of this shot (the last shot's fade only)."""
        return self.seconds if self.applies and self.last else type(self.seconds)(0)


def joins(transitions: Sequence[tuple[str, N]]) -> list[Join[N]]:
    """One :class:`Join` per shot, from each shot's (transition type, length)."""
    last = len(transitions) - 1
    return [Join(kind, length, index == last) for index, (kind, length) in enumerate(transitions)]


def room(length: N, incoming: N, following: N | None) -> N:
    """The most a transition out of a shot of ``length`` may take: what its ``incoming`` transition
    leaves of it, and (unless it is the last shot) no more than the ``following`` shot."""
    left = length - incoming
    return left if following is None else min(left, following)
