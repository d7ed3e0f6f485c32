"""Evaluation metrics of the Ingredients paper: face similarity (greedy matching, minimum rule),
CLIPScore and FID on face crops, plus the paper-protocol benchmark runner (``python -m
ingredients_model.metrics.benchmark``). Submodules import their heavy dependencies lazily.
"""

from ingredients_model.metrics.matching import ClipMatchSummary, FrameMatch, Match, greedy_match, summarize

__all__ = ["ClipMatchSummary", "FrameMatch", "Match", "greedy_match", "summarize"]
