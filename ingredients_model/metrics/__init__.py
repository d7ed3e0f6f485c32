"""Evaluation metrics of the Ingredients paper, by protocol (:mod:`~ingredients_model.metrics.protocols`):
``released`` reproduces the public metric scripts rule for rule (:mod:`~ingredients_model.metrics.released`);
``strict`` is ours (greedy one-to-one matching, minimum over people: :mod:`~.matching`).
Face similarity, CLIPScore and FID on face crops, and the Table 1 runner (``python -m
ingredients_model.metrics.benchmark``). Submodules import their heavy dependencies lazily.
"""

from ingredients_model.metrics.matching import ClipMatchSummary, FrameMatch, Match, greedy_match, summarize

__all__ = ["ClipMatchSummary", "FrameMatch", "Match", "greedy_match", "summarize"]
