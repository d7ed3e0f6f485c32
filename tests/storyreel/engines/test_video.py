"""FrameWriter: raw RGB through a pipe to an H.264 yuv420p mp4, cleaned up on errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storyreel.engines.video import FrameWriter
from storyreel.errors import StoryreelError
from storyreel.ffmpeg_tools import probe_video


def test_writes_frames_at_fps_even_to_a_partial_name(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4.partial"
    with FrameWriter(out, 33, 21, 8) as writer:  # odd sizes are padded for yuv420p
        for i in range(5):
            writer.write(np.full((21, 33, 3), i * 40, dtype=np.uint8))
    info = probe_video(out)
    assert (info.width, info.height, info.fps, info.frames, info.codec) == (34, 22, 8, 5, "h264")
    assert info.pix_fmt.startswith("yuv420p")


def test_wrong_frame_size_and_empty_clip_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError), FrameWriter(tmp_path / "a.mp4", 16, 16, 8) as writer:
        writer.write(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(StoryreelError, match="no frames"), FrameWriter(tmp_path / "b.mp4", 16, 16, 8):
        pass


def test_ffmpeg_failure_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(StoryreelError, match=r"ffmpeg failed while writing x\.mp4"):  # noqa: SIM117
        with FrameWriter(tmp_path / "missing-dir" / "x.mp4", 16, 16, 8) as writer:
            for _ in range(50):
                writer.write(np.zeros((16, 16, 3), dtype=np.uint8))
