"""Building a story's outputs: a reel per format, the review page, and the record of both.

The one way ``storyreel render``, ``storyreel reel`` and ``storyreel eval`` write them, so the record
(:mod:`storyreel.reel_record`) always describes the files on disk. Imports run one way:
outputs → review → reel_record → reel.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storyreel.reel import ReelResult
from storyreel.reel_record import assembly_options, reel_inputs, write_reel_record, write_review_note
from storyreel.review import write_review
from storyreel.story_reels import build_reel_results

if TYPE_CHECKING:
    from storyreel.project import Project
    from storyreel.story import Story

__all__ = ["build_outputs", "refresh_review"]


def build_outputs(
    story: Story,
    project: Project,
    *,
    review: bool = True,
    progress: Callable[[float, float], None] | None = None,
    **options: Any,
) -> tuple[list[ReelResult], Path | None]:
    """Assemble every format's reel, write the review page (unless ``review`` is False) and record both.

    ``options`` are :func:`storyreel.story_reels.build_reel`'s; ``progress(seconds_written, seconds_total)``
    follows the encoding of all the reels. Returns (one result per format, review page or None).
    """
    inputs = reel_inputs(story, project)  # before assembling: a clip changing meanwhile makes it stale
    wanted = assembly_options(story, project, **options)
    results = build_reel_results(story, project, on_progress=progress, **options)
    page = write_review(story, project, reels=results) if review else None
    write_reel_record(project, results, inputs=inputs, options=wanted, review=page is not None)
    return results, page


def refresh_review(story: Story, project: Project) -> Path:
    """Write the review page for the reels on disk (no assembly) and note it in the record."""
    page = write_review(story, project)
    write_review_note(project)
    return page
