"""The transition rules the story checks (seconds) and the reel assembly (frames) share."""

from __future__ import annotations

import typing

from storyreel.story import Output, Transition
from storyreel.timeline import CAPTION_MODES, TRANSITIONS, joins, room


def test_the_schema_uses_the_same_vocabulary() -> None:
    assert typing.get_args(Transition.model_fields["type"].annotation) == TRANSITIONS
    assert typing.get_args(Output.model_fields["captions"].annotation) == CAPTION_MODES


def test_which_transitions_take_effect() -> None:
    cut, cross, fade, last_cross = joins([("cut", 5), ("crossfade", 6), ("fade", 7), ("crossfade", 8)])
    (last_fade,) = joins([("fade", 9)])
    assert (cut.applies, cut.overlap, cut.fade_out) == (False, 0, 0)
    assert (cross.applies, cross.overlap, cross.fade_out) == (True, 6, 0)
    assert (fade.applies, fade.overlap) == (True, 7)
    # on the last shot a crossfade has nothing to cross into; a fade fades the reel out
    assert (last_cross.last, last_cross.applies, last_cross.overlap) == (True, False, 0)
    assert (last_fade.last, last_fade.applies, last_fade.fade_out, last_fade.overlap) == (True, True, 9, 0)


def test_room_is_what_the_incoming_transition_leaves_and_at_most_the_next_shot() -> None:
    assert room(48, 12, 24) == 24
    assert room(48, 30, 24) == 18
    assert room(2.0, 0.5, None) == 1.5
