"""Write frames to an H.264 mp4 by piping raw RGB to ffmpeg (no temporary images)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np

from storyreel.errors import StoryreelError
from storyreel.ffmpeg_tools import ffmpeg_exe, stderr_tail
from storyreel.fsutil import DISK_FULL_TEXT, disk_full_error


class FrameWriter:
    """``with FrameWriter(path, w, h, fps) as out: out.write(frame)`` → H.264 yuv420p mp4 at ``fps``.

    Frames are ``uint8`` arrays ``[h, w, 3]`` (RGB) or raw ``bytes`` of that size. Odd sizes are padded
    to even ones (yuv420p needs them). The container is forced to mp4 so ``path`` may be a ``.partial``
    name. If the block raises, ffmpeg is killed and the caller's atomic write discards the file.
    """

    def __init__(
        self, path: Path, width: int, height: int, fps: float, *, crf: int = 18, preset: str = "medium"
    ):
        self.path, self.width, self.height, self.fps = Path(path), width, height, fps
        self.frames = 0
        pad = [] if width % 2 == 0 and height % 2 == 0 else ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        self._cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
            *pad, "-an", "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", "-f", "mp4", str(self.path),
        ]  # fmt: skip
        self._stack = contextlib.ExitStack()
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> FrameWriter:
        self._stderr = self._stack.enter_context(tempfile.TemporaryFile())
        try:
            # own session: a Ctrl-C in the terminal reaches only us, and we stop ffmpeg in __exit__
            self._proc = subprocess.Popen(
                self._cmd, stdin=subprocess.PIPE, stderr=self._stderr, start_new_session=True
            )
        except OSError as err:
            self._stack.close()
            raise StoryreelError(f"could not start ffmpeg ({self._cmd[0]}): {err}") from err
        return self

    def write(self, frame: np.ndarray | bytes) -> None:
        """Append one frame."""
        assert self._proc is not None and self._proc.stdin is not None, "use FrameWriter as a context manager"
        data = frame if isinstance(frame, bytes) else np.ascontiguousarray(frame, dtype=np.uint8).tobytes()
        if len(data) != self.width * self.height * 3:
            raise ValueError(f"frame has {len(data)} bytes, expected {self.width}x{self.height}x3")
        try:
            self._proc.stdin.write(data)
        except BrokenPipeError:
            self._proc.wait()
            self._fail()
        self.frames += 1

    def _fail(self) -> None:
        self._stderr.seek(0)
        stderr = self._stderr.read()
        if DISK_FULL_TEXT.encode() in stderr:
            raise disk_full_error(self.path)
        raise StoryreelError(
            f"ffmpeg failed while writing {self.path.name}:\n{stderr_tail(stderr)}",
            hint="check free disk space; rerun with --debug for details",
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        with self._stack:
            if exc_type is not None:
                proc.kill()
                proc.wait()
                return
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            if proc.wait() != 0:
                self._fail()
            if self.frames == 0:
                raise StoryreelError(f"no frames were written to {self.path.name}")


def write_model_frames(frames: np.ndarray, output: Path, fps: float) -> tuple[int, int, int]:
    """Write a model's float frames (``[n, h, w, 3]`` in 0..1, as diffusers' ``output_type="np"`` gives)
    to the mp4 ``output`` at high quality; returns (frames, width, height)."""
    pixels = np.clip(np.rint(np.asarray(frames) * 255.0), 0, 255).astype(np.uint8)
    height, width = pixels.shape[1:3]
    with FrameWriter(output, width, height, fps, crf=16, preset="medium") as out:
        for frame in pixels:
            out.write(frame)
    return len(pixels), width, height
