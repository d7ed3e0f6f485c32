"""Finding, running and probing ffmpeg (no ffprobe needed, never through a shell)."""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from storyreel.errors import StoryreelError
from storyreel.fsutil import DISK_FULL_TEXT, disk_full_error

if TYPE_CHECKING:
    from PIL import Image

STDERR_TAIL_LINES = 12
log = logging.getLogger(__name__)


def ffmpeg_exe() -> str:
    """The ffmpeg binary: ``ffmpeg`` on PATH, else the static build that imageio-ffmpeg ships."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        raise StoryreelError(
            "ffmpeg was not found (not on PATH, and imageio-ffmpeg has no binary for this platform)",
            hint="install ffmpeg (e.g. `apt-get install ffmpeg`) or `pip install imageio-ffmpeg`",
        ) from err


def stderr_tail(stderr: bytes | str | None, lines: int = STDERR_TAIL_LINES) -> str:
    """The last non-empty lines of ffmpeg's stderr, for error messages."""
    if not stderr:
        return "(ffmpeg printed nothing)"
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    kept = [line.rstrip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def run_ffmpeg(
    args: Sequence[str],
    *,
    what: str,
    hint: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> subprocess.CompletedProcess:
    """Run ffmpeg with ``args`` (no shell); on failure raise StoryreelError with the tail of its stderr.

    ``what`` completes "ffmpeg failed while ..." and should name the shot(s) involved. ``progress`` is
    called with the seconds of output written so far, read from ffmpeg's ``-progress`` reports.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    log.debug("ffmpeg: %s", shlex.join(cmd))
    try:
        if progress is None:
            proc = subprocess.run(cmd, capture_output=True, check=False)
        else:
            proc = _run_with_progress(cmd, progress)
    except OSError as err:
        raise StoryreelError(f"could not start ffmpeg ({cmd[0]}): {err}", hint=hint) from err
    if proc.returncode != 0:
        if DISK_FULL_TEXT.encode() in (proc.stderr or b"") and args and args[-1] != "-":
            raise disk_full_error(args[-1])
        raise StoryreelError(
            f"ffmpeg failed while {what}:\n{stderr_tail(proc.stderr)}",
            hint=hint or "rerun with --debug for details; check that the files involved are valid videos",
        )
    return proc


def progress_seconds(line: str) -> float | None:
    """The output time in one line of ffmpeg's ``-progress`` report (``out_time_us=1250000`` → 1.25)."""
    key, _, value = line.strip().partition("=")
    if key != "out_time_us" or not value.lstrip("-").isdigit():
        return None  # other keys, and "N/A" before the first frame
    return max(int(value), 0) / 1e6


def _run_with_progress(cmd: list[str], progress: Callable[[float], None]) -> subprocess.CompletedProcess:
    """Run ffmpeg with ``-progress pipe:1`` and report each ``out_time_us``; stderr is kept for errors."""
    cmd = [cmd[0], "-progress", "pipe:1", "-nostats", *cmd[1:]]
    with tempfile.TemporaryFile() as stderr:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                seconds = progress_seconds(line)
                if seconds is not None:
                    progress(seconds)
        stderr.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, None, stderr.read())


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` learns about a file from ``ffmpeg -i`` and a stream-copy pass.

    ``duration`` is the video stream's length (``frames / fps``); ``codec`` is e.g. ``"h264"``.
    """

    width: int
    height: int
    fps: float
    frames: int
    duration: float
    has_audio: bool
    subtitle_streams: int
    codec: str
    pix_fmt: str = ""
    profile: str = ""
    audio_codec: str | None = None
    audio_duration: float | None = None


_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: (Video|Audio|Subtitle): (.*)$", re.MULTILINE)
_SIZE = re.compile(r"\b(\d{1,5})x(\d{1,5})\b")
_FPS = re.compile(r"([\d.]+)(k?) (?:fps|tbr)\b")
_FRAME = re.compile(r"frame=\s*(\d+)")
_TIME = re.compile(r"time=\s*(\d+):(\d+):([\d.]+)")


def _video_fields(desc: str) -> tuple[str, str, str, int, int, float]:
    codec_part, _, rest = desc.partition(",")
    codec = codec_part.split()[0]
    profile_match = re.match(r"\S+ \(([^)]*)\)", codec_part)
    profile = profile_match.group(1) if profile_match else ""
    pix_fmt = rest.strip().split("(")[0].split(",")[0].strip()
    size = _SIZE.search(rest)
    fps = _FPS.search(rest)
    if not size or not fps:
        raise ValueError(desc)
    rate = float(fps.group(1)) * (1000 if fps.group(2) else 1)
    return codec, profile, pix_fmt, int(size.group(1)), int(size.group(2)), rate


def _last_time(stderr: str) -> float | None:
    times = _TIME.findall(stderr)
    if not times:
        return None
    h, m, s = times[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def probe_video(path: Path | str) -> VideoInfo:
    """Probe a video file without ffprobe: stream info from ``ffmpeg -i``, frames from a stream-copy pass.

    Raises StoryreelError when the file is missing, unreadable or has no video stream.
    """
    path = Path(path)
    if not path.is_file():
        raise StoryreelError(f"video file not found: {path}")
    cmd = ["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    proc = run_ffmpeg(cmd, what=f"reading {path}", hint="the file is damaged or not a video; re-create it")
    stderr = proc.stderr.decode("utf-8", "replace")
    streams = _STREAM.findall(stderr.split("Stream mapping:")[0])
    videos = [desc for kind, desc in streams if kind == "Video"]
    audios = [desc for kind, desc in streams if kind == "Audio"]
    frames = _FRAME.findall(stderr)
    if not videos or not frames:
        raise StoryreelError(f"{path} has no readable video stream", hint="re-create the file")
    try:
        codec, profile, pix_fmt, width, height, fps = _video_fields(videos[0])
    except ValueError as err:
        raise StoryreelError(f"could not understand the video stream of {path}: {videos[0]}") from err
    count = int(frames[-1])
    if count == 0:
        raise StoryreelError(f"{path} contains no video frames", hint="re-create the file")
    audio_codec = audios[0].split()[0].rstrip(",") if audios else None
    return VideoInfo(
        width=width,
        height=height,
        fps=fps,
        frames=count,
        duration=count / fps,
        has_audio=bool(audios),
        subtitle_streams=sum(1 for kind, _ in streams if kind == "Subtitle"),
        codec=codec,
        pix_fmt=pix_fmt,
        profile=profile,
        audio_codec=audio_codec,
        audio_duration=audio_duration(path) if audios else None,
    )


_AUDIO_SIGNATURES = (
    (0, b"ID3"),  # MP3 with ID3 tags
    (0, b"RIFF"),  # WAV
    (0, b"fLaC"),
    (0, b"OggS"),  # Ogg Vorbis / Opus
    (0, b"FORM"),  # AIFF
    (4, b"ftyp"),  # M4A / AAC in MP4
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM audio
)


def audio_problem(path: Path | str) -> str | None:
    """Why ``path`` is not an audio file ffmpeg can read, or None. Cheap: the first bytes are compared
    with the signatures of common audio formats (MP3 frames, WAV, FLAC, Ogg, AIFF, M4A, WebM); only a file
    that matches none is handed to ffmpeg, which must find an audio stream in it."""
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(12)
    if not head:
        return "the file is empty"
    if any(head[at : at + len(magic)] == magic for at, magic in _AUDIO_SIGNATURES):
        return None
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG audio / ADTS frame sync
        return None
    try:
        run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-t", "0.1", "-f", "null", "-"], what=f"reading {path}")
    except StoryreelError:
        return "ffmpeg finds no audio in it"
    return None


def audio_duration(path: Path | str) -> float:
    """Length in seconds of the first audio stream, measured by decoding it."""
    proc = run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-f", "null", "-"], what=f"reading audio of {path}")
    seconds = _last_time(proc.stderr.decode("utf-8", "replace"))
    if seconds is None:
        raise StoryreelError(f"could not measure the audio of {path}")
    return seconds


_KNOWN_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/local/share/fonts/DejaVuSans.ttf",
    "/Library/Fonts/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


def _fc_match(family: str) -> Path | None:
    exe = shutil.which("fc-match")
    if not exe:
        return None
    try:
        proc = subprocess.run([exe, "-f", "%{file}", family], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(proc.stdout.strip())
    return (
        path if proc.returncode == 0 and path.suffix.lower() in (".ttf", ".otf") and path.is_file() else None
    )


def _package_fonts() -> list[Path]:
    import importlib.util

    found = []
    for package, pattern in (("matplotlib", "mpl-data/fonts/ttf/DejaVuSans.ttf"), ("PIL", "*.ttf")):
        spec = importlib.util.find_spec(package)
        if spec and spec.origin:
            found += sorted(Path(spec.origin).parent.glob(pattern))
    return found


def find_font() -> Path | None:
    """A readable TrueType font for drawtext: $STORYREEL_FONT, DejaVu Sans (fontconfig or known paths),
    a font file shipped inside PIL/matplotlib, else None."""
    override = os.environ.get("STORYREEL_FONT")
    if override:
        if Path(override).is_file():
            return Path(override)
        raise StoryreelError(f"STORYREEL_FONT points to a missing file: {override}")
    for candidate in (_fc_match("DejaVu Sans"), *map(Path, _KNOWN_FONTS), *_package_fonts()):
        if candidate and candidate.is_file():
            return candidate
    return None


def wrap_text(text: str, font: Path, size: int, max_width: int) -> list[str]:
    """Split ``text`` into lines at most ``max_width`` pixels wide in ``font`` at ``size`` (whole words)."""
    from PIL import ImageFont

    face = ImageFont.truetype(str(font), size)
    lines: list[str] = []
    for paragraph in text.strip().splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            trial = f"{line} {word}".strip()
            if line and face.getlength(trial) > max_width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return [line for line in lines if line] or [""]


def read_frames(path: Path | str, indices: Sequence[int], width: int | None = None) -> list[Image.Image]:
    """The frames at ``indices`` (0-based, sorted, within the video) as RGB images, scaled to ``width``
    (keeping the aspect) when given; one ffmpeg call, no temporary files."""
    from PIL import Image

    info = probe_video(path)
    picks = sorted({min(max(0, int(i)), info.frames - 1) for i in indices})
    if width is None:
        out_w, out_h = info.width, info.height
    else:
        out_w, out_h = width, max(2, round(info.height * width / info.width / 2) * 2)
    select = "+".join(f"eq(n\\,{n})" for n in picks)
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-vf",
           f"select={select},scale={out_w}:{out_h}:flags=bicubic", "-fps_mode", "passthrough",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, check=False)
    size = out_w * out_h * 3
    if proc.returncode != 0 or len(proc.stdout) < size:
        raise StoryreelError(f"could not read frames of {path}:\n{stderr_tail(proc.stderr)}")
    data = proc.stdout
    return [
        Image.frombytes("RGB", (out_w, out_h), data[i : i + size])
        for i in range(0, len(data) - size + 1, size)
    ]
