"""The campaign page: one static page over every story, variant and format of a batch.

For each story (each ``--set`` variant counts as one) it shows every format's reel with its poster
frame, where the clips came from (rendered now, reused from the clip store, already current),
how each clip fills each format, and what the last ``storyreel eval`` says about each person in plain
words: their resemblance over the story's shots (the weakest shot counts, see :mod:`storyreel.quality`)
and how often they were missing. Links go to each story's own review page. ``storyreel render`` writes
it after a batch of several stories; ``storyreel campaign`` writes it again (after ``storyreel eval``).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from storyreel.fsutil import atomic_write_text
from storyreel.quality import shot_verdicts, story_protocol_scores
from storyreel.review import page_template, reel_views, write_poster_for

if TYPE_CHECKING:
    from storyreel.runner import StoryReport
    from storyreel.story import Story

__all__ = ["CAMPAIGN_FILE", "CAMPAIGN_TEMPLATE", "default_campaign_path", "wants_campaign", "write_campaign"]

CAMPAIGN_FILE = "campaign.html"
CAMPAIGN_TEMPLATE = "campaign.html.j2"
_RANK = {"poor": 0, "borderline": 1, "good": 2, "unknown": 3}


def wants_campaign(stories: Sequence[Story]) -> bool:
    """Whether a batch deserves a campaign page: more than one story or variant."""
    return len(stories) > 1


def default_campaign_path(stories: Sequence[Story]) -> Path:
    """``campaign.html`` in the deepest folder that holds every story file of the batch."""
    folders = [str(story.root) for story in stories]
    return Path(os.path.commonpath(folders)) / CAMPAIGN_FILE


def _rel(target: Path, base: Path) -> str:
    return quote(Path(os.path.relpath(target, base)).as_posix())


def _people(story: Story, evaluation: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per cast member over the story's evaluated shots: the weakest label, its sentence and shot."""
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("shots"), dict):
        return []
    worst: dict[str, tuple[str, str, str]] = {}
    for shot in story.shots:
        entry = evaluation["shots"].get(shot.id)
        if not isinstance(entry, dict) or entry.get("status") != "ok":
            continue
        for verdict in shot_verdicts(entry, evaluation):
            known = worst.get(verdict.name)
            if known is None or _RANK[verdict.label] < _RANK[known[0]]:
                worst[verdict.name] = (verdict.label, verdict.sentence, shot.id)
    return [
        {"name": name, "label": label, "sentence": sentence, "shot": shot_id}
        for name, (label, sentence, shot_id) in sorted(worst.items())
    ]


def write_campaign(
    stories: Sequence[Story], path: Path | None = None, *, reports: Sequence[StoryReport] | None = None
) -> Path:
    """Write the campaign page for ``stories`` to ``path`` (default :func:`default_campaign_path`);
    ``reports`` (from the render that made them) add what was rendered and reused."""
    from storyreel.evaluate import read_eval
    from storyreel.project import Project

    path = Path(path) if path is not None else default_campaign_path(stories)
    base = path.parent
    by_story = {(r.story_path, tuple(sorted(r.variables.items()))): r for r in reports or []}
    entries = []
    labels: list[str] = []
    for story in stories:
        project = Project.from_story(story)
        report = by_story.get((story.path, tuple(sorted(story.variables.items()))))
        reels = []
        for view in reel_views(story, project):
            poster = write_poster_for(view, project.renders_dir)
            label = view.label or view.path.stem
            labels += [label] if label not in labels else []
            fills = sorted(s for s, kind in view.framings.items() if kind == "fill")
            reels.append(
                {
                    "label": label,
                    "size": f"{view.width}x{view.height}",
                    "src": _rel(view.path, base),
                    "kind": "webm" if view.path.suffix.lower() == ".webm" else "mp4",
                    "poster": _rel(poster, base) if poster else None,
                    "portrait": view.height > view.width,
                    "fills": fills,
                }
            )
        evaluation = read_eval(project)
        entries.append(
            {
                "title": story.title,
                "file": _rel(story.path, base),
                "variables": sorted(story.variables.items()),
                "review": _rel(project.review_path, base) if project.review_path.is_file() else None,
                "reels": {reel["label"]: reel for reel in reels},
                "shots": len(story.shots),
                "rendered": len(report.rendered) if report else None,
                "reused": len(report.reused) if report else None,
                "current": len(report.skipped) if report else None,
                "people": _people(story, evaluation),
                "scores": story_protocol_scores(evaluation, [s.id for s in story.shots])
                if evaluation
                else [],
                "evaluated": evaluation is not None,
                "backend": (evaluation or {}).get("backend_label"),
            }
        )
    totals = None
    if reports:
        totals = {
            "rendered": sum(len(r.rendered) for r in reports),
            "reused": sum(len(r.reused) for r in reports),
            "current": sum(len(r.skipped) for r in reports),
        }
    html = page_template(CAMPAIGN_TEMPLATE).render(
        stories=entries,
        labels=labels,
        totals=totals,
        reels=sum(len(e["reels"]) for e in entries),
        made=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    atomic_write_text(path, html)
    return path
