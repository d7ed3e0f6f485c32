"""The story format: ``story.yaml`` as pydantic models, loaded with every problem at file:line:column.

:func:`load_story` reads the YAML keeping positions (:mod:`.positions`), validates it against the schema
(:mod:`.schema`, errors in the user's words by :mod:`.messages`) and the cross-field checks
(:mod:`.checks`), and raises :class:`StoryValidationError` listing *all* problems found in one pass. Each
:class:`Problem` carries the location, the field path (``shots[2].cast[0]``), what was expected and a hint.
"""

from __future__ import annotations

from storyreel.story.load import load_story, parse_story
from storyreel.story.problems import MAX_PROBLEMS_SHOWN, Problem, StoryValidationError
from storyreel.story.prompts import placeholders
from storyreel.story.schema import (
    MODEL_FPS,
    MODEL_MAX_FRAMES,
    Brand,
    CastMember,
    Defaults,
    Music,
    Output,
    Shot,
    Story,
    Transition,
    story_json_schema,
)
from storyreel.story.variables import parse_assignments, variants

__all__ = [
    "MAX_PROBLEMS_SHOWN",
    "MODEL_FPS",
    "MODEL_MAX_FRAMES",
    "Brand",
    "CastMember",
    "Defaults",
    "Music",
    "Output",
    "Problem",
    "Shot",
    "Story",
    "StoryValidationError",
    "Transition",
    "load_story",
    "parse_assignments",
    "parse_story",
    "placeholders",
    "story_json_schema",
    "variants",
]
