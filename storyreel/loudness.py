"""Music loudness per reel, EBU R128 with ffmpeg's ``loudnorm`` in two passes.

The first pass measures the music exactly as it will sound in the reel (looped or trimmed to the reel's
length, faded); the second applies ``loudnorm`` with those measurements and ``linear=true``, a single
gain that keeps the music's dynamics (ffmpeg falls back to its dynamic mode only when the target cannot be
reached without exceeding the true-peak limit). The measuring pass decodes audio only, a fraction of a
second for a reel's worth of music, so it runs for every output.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import ffmpeg

from storyreel.ffmpeg_tools import run_ffmpeg

__all__ = ["LOUDNESS_RANGE", "TARGET_LUFS", "TRUE_PEAK", "Loudness", "measure", "normalize"]

TARGET_LUFS = -14.0
"""Integrated loudness of the music in a reel (LUFS): what YouTube, Instagram and TikTok play back at."""
TRUE_PEAK = -1.0
"""Highest true peak allowed (dBTP)."""
LOUDNESS_RANGE_TARGET = 11.0
"""loudnorm's loudness range target (LU)."""
LOUDNESS_RANGE = (-40.0, -5.0)
"""Allowed ``music.loudness`` targets (LUFS)."""
SAMPLE_RATE = 48000

_JSON_RE = re.compile(r"\{[^{}]*\"input_i\"[^{}]*\}", re.DOTALL)


@dataclass(frozen=True)
class Loudness:
    """What the first ``loudnorm`` pass measured."""

    integrated: float
    true_peak: float
    lra: float
    threshold: float
    offset: float

    @property
    def silent(self) -> bool:
        return not math.isfinite(self.integrated) or self.integrated < -70


def _float(data: dict[str, Any], name: str) -> float:
    try:
        return float(data[name])
    except (KeyError, TypeError, ValueError):
        return float("-inf")


def measure(audio: Any, target: float, *, what: str) -> Loudness:
    """Measure ``audio`` (an ffmpeg-python audio stream) with ``loudnorm``'s analysis pass."""
    stream = audio.filter("loudnorm", I=target, TP=TRUE_PEAK, LRA=LOUDNESS_RANGE_TARGET, print_format="json")
    args = ffmpeg.output(stream, "-", f="null").get_args()
    proc = run_ffmpeg(["-loglevel", "info", *args], what=f"measuring the loudness of {what}")
    found = _JSON_RE.findall(proc.stderr.decode("utf-8", "replace"))
    data = json.loads(found[-1]) if found else {}
    return Loudness(
        integrated=_float(data, "input_i"),
        true_peak=_float(data, "input_tp"),
        lra=_float(data, "input_lra"),
        threshold=_float(data, "input_thresh"),
        offset=_float(data, "target_offset"),
    )


def normalize(audio: Any, target: float, measured: Loudness) -> Any:
    """``audio`` brought to ``target`` LUFS with the second ``loudnorm`` pass (resampled to 48 kHz)."""
    return audio.filter(
        "loudnorm",
        I=target,
        TP=TRUE_PEAK,
        LRA=LOUDNESS_RANGE_TARGET,
        measured_I=f"{measured.integrated:.2f}",
        measured_TP=f"{measured.true_peak:.2f}",
        measured_LRA=f"{measured.lra:.2f}",
        measured_thresh=f"{measured.threshold:.2f}",
        offset=f"{measured.offset:.2f}",
        linear="true",
    ).filter("aresample", SAMPLE_RATE)
