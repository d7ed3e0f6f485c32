"""Assembling finished clips into one reel with ffmpeg: transitions, retiming, reframing, captions,
cards, brand finishing (logo, font, colours, call-to-action card) and music at a normalised loudness.

Transitions follow :mod:`storyreel.timeline` (a shot's transition is how it passes INTO THE NEXT shot):
``crossfade`` is xfade ``fade``, ``fade`` is xfade ``fadeblack`` (through black), and the last shot's fade
fades the reel out to black without changing its length. So the reel's length, in frames at the reel
fps, is the sum of the retimed shot lengths minus the overlaps (plus the title and end cards).

Each clip is fitted to the reel by its :class:`~storyreel.reframe.Framing`: scaled when it has the
reel's shape, else a face-following crop or the whole clip over a blurred fill (:mod:`storyreel.reframe`
decides which).

This module only assembles the clips it is given: :mod:`storyreel.story_reels` turns a story into them
and into these settings, what the reels were last built from lives in :mod:`storyreel.reel_record`,
and :mod:`storyreel.outputs` builds the reels, the review page and the record together.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import ffmpeg

from storyreel.colors import DEFAULT_COLORS
from storyreel.errors import StoryreelError, StoryreelWarning
from storyreel.ffmpeg_tools import VideoInfo, find_font, probe_video, run_ffmpeg
from storyreel.fsutil import atomic_path, atomic_write_text
from storyreel.loudness import measure, normalize
from storyreel.reel_cards import EndCardSpec, LogoSpec, TextWriter, cta_card, overlay_logo, title_card
from storyreel.reframe import Framing
from storyreel.timeline import BURNED_CAPTIONS, CAPTION_MODES, TRANSITIONS, joins, room

RetimeMode = Literal["duplicate", "interpolate"]
RETIME_MODES: tuple[str, ...] = get_args(RetimeMode)
VideoFormat = Literal["mp4", "webm"]
VIDEO_FORMATS: tuple[str, ...] = get_args(VideoFormat)
TITLE_SECONDS = 3.0
END_SECONDS = 4.0
_XFADE = {"crossfade": "fade", "fade": "fadeblack"}
_CODEC = {"mp4": "h264", "webm": "vp9"}


class ReelWarning(StoryreelWarning):
    """Something in the reel was adjusted (e.g. a transition clamped) or skipped (e.g. no font)."""


@dataclass
class ReelClip:
    """One finished shot clip and how it passes into the next shot.

    ``key`` (the clip's job key) and ``people`` (its cast count) guide reframing; ``framing`` is how the
    clip fills the reel (None: scaled to fit, with bars where the shapes differ)."""

    shot_id: str
    path: Path
    transition: str = "cut"
    transition_seconds: float = 0.5
    caption: str | None = None
    key: str | None = None
    people: int = 0
    framing: Framing | None = None


class MusicSpec(Protocol):
    """What the reel needs to know about music (``storyreel.story.Music`` fits)."""

    file: Path
    volume: float
    fade_in: float
    fade_out: float
    loudness: float | None


@dataclass
class ReelMusic:
    """Background music: trimmed or looped to the reel, faded in and out, then brought to ``loudness``
    LUFS (EBU R128), or scaled by ``volume`` when ``loudness`` is None."""

    file: Path
    volume: float = 1.0
    fade_in: float = 1.0
    fade_out: float = 2.0
    loudness: float | None = None


@dataclass
class ReelBrand:
    """Brand finishing: a logo over the video, a font and colours for cards and captions (``#rrggbbaa``,
    see :data:`DEFAULT_COLORS`), and a call-to-action card closing the reel."""

    logo: LogoSpec | None = None
    font: Path | None = None
    colors: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_COLORS))
    end_card: EndCardSpec | None = None


@dataclass(frozen=True)
class Segment:
    """Where one shot sits in the reel, in frames at the reel fps (title card included)."""

    shot_id: str
    start: int
    frames: int
    overlap_out: int
    caption: str | None
    caption_start: int
    caption_end: int


@dataclass
class ReelResult:
    """The written reel and how it was made (``frames`` is measured from the output file)."""

    path: Path
    frames: int
    planned_frames: int
    fps: int
    width: int
    height: int
    fast_path: bool
    captions_burned: bool
    subtitles: Path | None
    segments: list[Segment]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    label: str = ""
    """The format's label (``9x16``, ``tiktok``; empty for a story's only format)."""
    framings: dict[str, str] = field(default_factory=dict)
    """How each shot fills this reel: fit, crop or fill."""
    loudness: float | None = None
    """The music's integrated loudness before normalising (LUFS), when it was normalised."""

    @property
    def duration(self) -> float:
        """Length of the reel in seconds."""
        return self.frames / self.fps

    def to_json(self) -> dict[str, Any]:
        """The reel's entry in ``storyreel reel --json`` (paths absolute)."""
        return {
            "path": str(Path(self.path).absolute()),
            "format": self.label or None,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frames": self.frames,
            "seconds": round(self.duration, 3),
            "shots": [segment.shot_id for segment in self.segments],
            "framings": self.framings,
            "stream_copy": self.fast_path,
            "captions_burned": self.captions_burned,
            "subtitles": str(Path(self.subtitles).absolute()) if self.subtitles else None,
            "music_loudness_before": self.loudness,
            "assembly_seconds": round(self.seconds, 3),
            "warnings": self.warnings,
        }


@dataclass
class _Plan:
    infos: list[VideoInfo]
    lengths: list[int]
    overlaps: list[int]
    fade_out: int
    title_frames: int
    end_frames: int
    segments: list[Segment]

    @property
    def total(self) -> int:
        return self.title_frames + sum(self.lengths) - sum(self.overlaps) + self.end_frames


def probe_clips(clips: Sequence[ReelClip]) -> list[VideoInfo]:
    """Probe every clip; a missing or unreadable one gives a StoryreelError naming its shot."""
    infos = []
    for clip in clips:
        if not Path(clip.path).is_file():
            raise StoryreelError(
                f"shot '{clip.shot_id}': clip {clip.path} does not exist",
                hint="run `storyreel render STORY` to render the missing shots",
            )
        try:
            infos.append(probe_video(clip.path))
        except StoryreelError as err:
            raise StoryreelError(
                f"shot '{clip.shot_id}': clip {clip.path} is damaged or not a video\n{err.message}",
                hint=f"delete {clip.path} and run `storyreel render STORY` to render it again",
            ) from err
    return infos


def _plan(
    clips: Sequence[ReelClip],
    infos: list[VideoInfo],
    fps: int,
    title_frames: int,
    end_frames: int,
    warn: Callable[[str], None],
) -> _Plan:
    lengths = [max(1, round(info.frames * fps / info.fps)) for info in infos]
    overlaps: list[int] = []
    fade_out = 0
    incoming = 0
    plan = joins([(clip.transition, round(clip.transition_seconds * fps)) for clip in clips])
    for i, (clip, join) in enumerate(zip(clips, plan, strict=True)):
        wanted = join.fade_out if join.last else join.overlap
        limit = max(0, room(lengths[i], incoming, None if join.last else lengths[i + 1]))
        if wanted > limit:
            what = (
                "the closing fade is longer than the clip"
                if join.last
                else f"{clip.transition} of {clip.transition_seconds:g} s is longer than "
                "a neighbouring clip allows"
            )
            warn(f"shot '{clip.shot_id}': {what}; shortened to {limit / fps:g} s")
            wanted = limit
        if join.last:
            fade_out = wanted
        else:
            overlaps.append(wanted)
            incoming = wanted
    segments = []
    start = title_frames
    for i, clip in enumerate(clips):
        incoming = overlaps[i - 1] if i else 0
        outgoing = overlaps[i] if i < len(overlaps) else 0
        segments.append(
            Segment(
                shot_id=clip.shot_id,
                start=start,
                frames=lengths[i],
                overlap_out=outgoing,
                caption=clip.caption or None,
                caption_start=start + incoming // 2,
                caption_end=start + lengths[i] - outgoing + outgoing // 2,
            )
        )
        start += lengths[i] - outgoing
    return _Plan(infos, lengths, overlaps, fade_out, title_frames, end_frames, segments)


def _layout(
    clips: Sequence[ReelClip],
    *,
    fps: int,
    captions: str,
    title: str | None,
    credits: str | None,
    end_card: EndCardSpec | None = None,
    font: Path | None = None,
    warn: Callable[[str], None],
) -> tuple[_Plan, Path | None, bool, str | None, str | None, EndCardSpec | None]:
    """Probe the clips and plan the timeline: (plan, font, burn captions?, title, credits, end card).

    ``font`` is the brand's font, else one is found; the title, end and call-to-action cards are dropped
    when there is no font, so they only count when drawable.
    """
    infos = probe_clips(clips)
    has_captions = any(c.caption for c in clips)
    if font is None and ((has_captions and captions in BURNED_CAPTIONS) or title or credits or end_card):
        font = find_font()
        if font is None:
            warn(
                "no TrueType font found (install fonts-dejavu-core): captions are not burned in and "
                "the title/end cards are left out"
            )
    title = title if font else None
    credits = credits if font else None
    end_card = end_card if font else None
    burn = bool(font) and has_captions and captions in BURNED_CAPTIONS
    title_frames = round(TITLE_SECONDS * fps) if title else 0
    end_frames = (round(END_SECONDS * fps) if credits else 0) + (
        round(end_card.seconds * fps) if end_card else 0
    )
    plan = _plan(clips, infos, fps, title_frames, end_frames, warn)
    return plan, font, burn, title, credits, end_card


def _timestamp(frame: int, fps: int, sep: str) -> str:
    ms = round(frame * 1000 / fps)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def vtt_escape(text: str) -> str:
    """Cue text for WebVTT, where ``&``, ``<`` and ``>`` start markup: escaped as character references."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def subtitles_text(segments: Sequence[Segment], fps: int, kind: str = "srt") -> str:
    """The captions as SubRip (``srt``, text as written) or WebVTT (``vtt``, text escaped with
    :func:`vtt_escape`); empty when no shot has a caption."""
    sep = "," if kind == "srt" else "."
    blocks = []
    for seg in (s for s in segments if s.caption):
        times = f"{_timestamp(seg.caption_start, fps, sep)} --> {_timestamp(seg.caption_end, fps, sep)}"
        cue = f"{len(blocks) + 1}\n" if kind == "srt" else ""
        text = "\n".join(line.strip() for line in seg.caption.splitlines() if line.strip())
        text = text.replace("-->", "→")
        blocks.append(f"{cue}{times}\n{vtt_escape(text) if kind == 'vtt' else text}\n")
    if not blocks:
        return ""
    header = "WEBVTT\n\n" if kind == "vtt" else ""
    return header + "\n".join(blocks)


def _frame(stream: Any, framing: Framing | None, width: int, height: int) -> Any:
    """``stream`` (a clip at its own size and rate) brought to ``width`` x ``height`` as ``framing`` says."""
    if framing is not None and framing.kind == "crop" and framing.crop is not None:
        crop_w, crop_h = framing.crop
        stream = stream.filter("crop", crop_w, crop_h, framing.x, framing.y)
        return stream.filter("scale", width, height, flags="bicubic")
    if framing is not None and framing.kind == "fill":
        parts = stream.split()
        sigma = max(4, round(max(width, height) / 40))
        back = (
            parts[0]
            .filter("scale", width, height, force_original_aspect_ratio="increase", flags="bilinear")
            .filter("crop", width, height)
            .filter("gblur", sigma=sigma)
            .filter("eq", brightness=-0.08)
        )
        front = parts[1].filter(
            "scale",
            width,
            height,
            force_original_aspect_ratio="decrease",
            force_divisible_by=2,
            flags="bicubic",
        )
        return ffmpeg.overlay(back, front, x="(W-w)/2", y="(H-h)/2")
    return stream.filter(
        "scale", width, height, force_original_aspect_ratio="decrease", flags="bicubic"
    ).filter("pad", width, height, "(ow-iw)/2", "(oh-ih)/2", color="black")


def _fit(
    stream: Any,
    info: VideoInfo,
    frames: int,
    fps: int,
    width: int,
    height: int,
    retime: str,
    framing: Framing | None = None,
) -> Any:
    stream = _frame(stream, framing, width, height)  # before retiming: crops follow the clip's frames
    if retime == "interpolate" and info.fps < fps - 1e-3:
        stream = stream.filter(
            "minterpolate", fps=fps, mi_mode="mci", mc_mode="aobmc", me_mode="bidir", vsbmc=1
        )
    else:
        stream = stream.filter("fps", fps)
    return (
        stream.filter("setsar", 1)
        .filter("format", "yuv420p")
        .filter("tpad", stop_mode="clone", stop=frames)
        .filter("trim", end_frame=frames)
        .filter("settb", f"1/{fps}")
        .filter("setpts", "N")
    )


def _concat(parts: list[Any]) -> Any:
    return parts[0] if len(parts) == 1 else ffmpeg.concat(*parts, v=1, a=0)


def _music_chain(path: Path, music: MusicSpec, seconds: float) -> Any:
    """The music as it plays in the reel: looped or trimmed to ``seconds``, faded in and out."""
    fade_in = min(max(0.0, music.fade_in), seconds / 2)
    fade_out = min(max(0.0, music.fade_out), seconds / 2)
    audio = ffmpeg.input(str(path), stream_loop=-1).audio
    audio = audio.filter("atrim", duration=f"{seconds:.6f}").filter("asetpts", "PTS-STARTPTS")
    if fade_in > 0:
        audio = audio.filter("afade", t="in", st=0, d=f"{fade_in:.6f}")
    if fade_out > 0:
        audio = audio.filter("afade", t="out", st=f"{seconds - fade_out:.6f}", d=f"{fade_out:.6f}")
    return audio


def _music_stream(music: MusicSpec, seconds: float, warn: Callable[[str], None]) -> tuple[Any, float | None]:
    """The reel's audio stream, and the loudness it was normalised from (LUFS; None when not)."""
    path = Path(music.file)
    if not path.is_file():
        raise StoryreelError(f"music file not found: {path}", hint="fix `music.file` in story.yaml")
    try:
        run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-t", "0.1", "-f", "null", "-"], what=f"reading {path}")
    except StoryreelError as err:
        raise StoryreelError(
            f"music file {path} has no readable audio\n{err.message}",
            hint="use an audio file ffmpeg can read (mp3, wav, m4a, ogg, flac)",
        ) from err
    target = getattr(music, "loudness", None)
    if target is None:
        return _music_chain(path, music, seconds).filter("volume", f"{max(0.0, music.volume):g}"), None
    measured = measure(_music_chain(path, music, seconds), target, what=f"the music {path.name}")
    if measured.silent:
        warn(f"the music {path.name} is silent in the reel: not normalised")
        return _music_chain(path, music, seconds), None
    return normalize(_music_chain(path, music, seconds), target, measured), measured.integrated


def _output_options(
    video_format: str, fps: int, preset: str, crf: int | None, has_audio: bool
) -> dict[str, Any]:
    if video_format == "webm":
        options: dict[str, Any] = {
            "c:v": "libvpx-vp9",
            "crf": 32 if crf is None else crf,
            "b:v": 0,
            "row-mt": 1,
            "deadline": "good",
            "cpu-used": 4,
            "pix_fmt": "yuv420p",
            "r": fps,
            "c:s": "webvtt",
            "f": "webm",
        }
        if has_audio:
            options.update({"c:a": "libopus", "b:a": "128k", "ar": 48000})
        return options
    options = {
        "c:v": "libx264",
        "preset": preset,
        "crf": 18 if crf is None else crf,
        "pix_fmt": "yuv420p",
        "r": fps,
        "movflags": "+faststart",
        "c:s": "mov_text",
        "f": "mp4",
    }
    if has_audio:
        options.update({"c:a": "aac", "b:a": "192k"})
    return options


def _fast_path_ok(
    plan: _Plan,
    *,
    fps: int,
    width: int,
    height: int,
    video_format: str,
    burn: bool,
    title: str | None,
    credits: str | None,
    music: Any,
    clips: Sequence[ReelClip],
    brand: ReelBrand | None,
) -> bool:
    if burn or title or credits or music is not None or plan.fade_out or any(plan.overlaps):
        return False
    if brand is not None and (brand.logo is not None or brand.end_card is not None):
        return False
    if any(c.framing is not None and c.framing.kind != "fit" for c in clips):
        return False
    first = plan.infos[0]
    return all(
        info.codec == _CODEC[video_format]
        and info.profile == first.profile
        and info.pix_fmt == "yuv420p"
        and (info.width, info.height) == (width, height)
        and abs(info.fps - fps) < 1e-3
        for info in plan.infos
    )


def _concat_list(clips: Sequence[ReelClip], workdir: Path) -> Path:
    listing = workdir / "clips.txt"
    lines = ["file '" + str(Path(c.path).resolve()).replace("'", "'\\''") + "'" for c in clips]
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


def _fail_naming_shots(err: StoryreelError, clips: Sequence[ReelClip]) -> StoryreelError:
    named = [c.shot_id for c in clips if str(c.path) in err.message or Path(c.path).name in err.message]
    prefix = f"shot {', '.join(repr(s) for s in named)}: " if named else ""
    return StoryreelError(prefix + err.message, hint=err.hint)


def assemble_reel(
    clips: Sequence[ReelClip],
    output: Path,
    *,
    fps: int = 24,
    width: int = 720,
    height: int = 480,
    retime: str = "duplicate",
    captions: str = "both",
    title: str | None = None,
    credits: str | None = None,
    music: MusicSpec | None = None,
    brand: ReelBrand | None = None,
    video_format: str | None = None,
    preset: str = "medium",
    crf: int | None = None,
    label: str = "",
    on_progress: Callable[[float, float], None] | None = None,
) -> ReelResult:
    """Assemble ``clips`` (in order) into ``output``, atomically, and describe the result.

    ``video_format`` defaults from the output's suffix (``.webm`` → webm, else mp4). Captions go to a
    sidecar next to the output (``.srt`` for mp4, ``.vtt`` for webm) and into a subtitle stream when
    ``captions`` is ``subtitles``/``both``, and are burned in when ``burn``/``both`` (if a font is found).
    Each clip fills the reel by its ``framing``; ``brand`` adds a logo, font, colours and a
    call-to-action card; ``label`` names the format in the result. Adjustments (clamped transitions, no
    font, reframing fallbacks) are reported as ``ReelWarning`` and in ``warnings``.
    ``on_progress(seconds_written, seconds_total)`` follows the encoding (ffmpeg's ``-progress``).
    """
    started = time.perf_counter()
    output = Path(output)
    video_format = video_format or ("webm" if output.suffix.lower() == ".webm" else "mp4")
    _check_options(
        clips,
        fps=fps,
        width=width,
        height=height,
        retime=retime,
        captions=captions,
        video_format=video_format,
    )
    notes: list[str] = []

    def warn(message: str) -> None:
        notes.append(message)
        warnings.warn(message, ReelWarning, stacklevel=3)

    for clip in clips:
        if clip.framing is not None and clip.framing.note:
            where = f" in {label}" if label else ""
            warn(f"shot '{clip.shot_id}'{where}: {clip.framing.note}")
    plan, font, burn, title, credits, end_card = _layout(
        clips,
        fps=fps,
        captions=captions,
        title=title,
        credits=credits,
        end_card=brand.end_card if brand else None,
        font=brand.font if brand else None,
        warn=warn,
    )
    loudness = None

    sub_kind = "vtt" if video_format == "webm" else "srt"
    sub_text = subtitles_text(plan.segments, fps, sub_kind) if captions in ("subtitles", "both") else ""
    sidecar = output.with_suffix(f".{sub_kind}")
    fast = _fast_path_ok(
        plan,
        fps=fps,
        width=width,
        height=height,
        video_format=video_format,
        burn=burn,
        title=title,
        credits=credits,
        music=music,
        clips=clips,
        brand=brand,
    )

    with tempfile.TemporaryDirectory(prefix="storyreel-reel-") as tmp:
        workdir = Path(tmp)
        sub_file = None
        if sub_text:
            sub_file = workdir / f"captions.{sub_kind}"
            sub_file.write_text(sub_text, encoding="utf-8")
        if fast:
            args = ["-f", "concat", "-safe", "0", "-i", str(_concat_list(clips, workdir))]
            if sub_file:
                args += [
                    "-i",
                    str(sub_file),
                    "-map",
                    "0:v:0",
                    "-map",
                    "1:0",
                    "-c:s",
                    "mov_text" if video_format == "mp4" else "webvtt",
                ]
            else:
                args += ["-map", "0:v:0"]
            args += ["-c:v", "copy"] + (["-movflags", "+faststart"] if video_format == "mp4" else [])
            args += ["-f", video_format]
        else:
            graph = _graph(
                clips,
                plan,
                fps=fps,
                width=width,
                height=height,
                retime=retime,
                burn=burn,
                title=title,
                credits=credits,
                end_card=end_card,
                brand=brand,
                font=font,
                workdir=workdir,
            )
            streams = [graph]
            if music is not None:
                audio, loudness = _music_stream(music, plan.total / fps, warn)
                streams.append(audio)
            if sub_file:
                streams.append(ffmpeg.input(str(sub_file))["s"])
            options = _output_options(video_format, fps, preset, crf, music is not None)
            args = ffmpeg.output(*streams, "OUTPUT", **options).get_args()[:-1]
        with atomic_path(output) as partial:
            try:
                total = plan.total / fps
                run_ffmpeg(
                    ["-y", "-loglevel", "error", *args, str(partial)],
                    what=f"assembling the reel {output} from {len(clips)} clips",
                    progress=(lambda done: on_progress(min(done, total), total)) if on_progress else None,
                )
                if on_progress is not None:
                    on_progress(total, total)  # ffmpeg's last report is the last frame's start
            except StoryreelError as err:
                raise _fail_naming_shots(err, clips) from err
            frames = probe_video(partial).frames
        if sub_text:
            atomic_write_text(sidecar, sub_text)
        else:
            sidecar.unlink(missing_ok=True)
    if frames != plan.total:
        warn(f"the reel has {frames} frames, {plan.total} were planned")
    return ReelResult(
        path=output,
        frames=frames,
        planned_frames=plan.total,
        fps=fps,
        width=width,
        height=height,
        fast_path=fast,
        captions_burned=burn,
        subtitles=sidecar if sub_text else None,
        segments=plan.segments,
        warnings=notes,
        seconds=time.perf_counter() - started,
        label=label,
        framings={c.shot_id: c.framing.kind if c.framing else "fit" for c in clips},
        loudness=loudness,
    )


def _check_options(clips: Sequence[ReelClip], **opts: Any) -> None:
    if not clips:
        raise StoryreelError("the reel has no shots", hint="add shots to story.yaml")
    checks = (("retime", RETIME_MODES), ("captions", CAPTION_MODES), ("video_format", VIDEO_FORMATS))
    for name, allowed in checks:
        if opts[name] not in allowed:
            raise StoryreelError(f"{name} must be one of {', '.join(allowed)}, not {opts[name]!r}")
    if opts["width"] % 2 or opts["height"] % 2 or opts["width"] < 16 or opts["height"] < 16:
        raise StoryreelError(
            f"reel size {opts['width']}x{opts['height']} must be even and at least 16x16",
            hint="set output.size in story.yaml to e.g. 720x480",
        )
    if not 1 <= opts["fps"] <= 120:
        raise StoryreelError(f"reel fps {opts['fps']} is out of range (1-120)")
    for clip in clips:
        if clip.transition not in TRANSITIONS:
            raise StoryreelError(
                f"shot '{clip.shot_id}': unknown transition {clip.transition!r}",
                hint=f"use one of {', '.join(TRANSITIONS)}",
            )
        if clip.transition_seconds < 0:
            raise StoryreelError(f"shot '{clip.shot_id}': transition seconds must not be negative")


def _fitted_streams(
    clips: Sequence[ReelClip], plan: _Plan, *, fps: int, width: int, height: int, retime: str
) -> list[Any]:
    """One retimed, framed stream per clip; a file used several times is read once and split."""
    paths = [str(Path(c.path).resolve()) for c in clips]
    shared: dict[str, list[Any]] = {}
    for clip, path, info, frames in zip(clips, paths, plan.infos, plan.lengths, strict=True):
        if path not in shared:
            source = ffmpeg.input(path).video
            stream = _fit(source, info, frames, fps, width, height, retime, clip.framing)
            uses = paths.count(path)
            shared[path] = [stream] if uses == 1 else [stream.split()[k] for k in range(uses)]
    return [shared[path].pop(0) for path in paths]


def _graph(
    clips: Sequence[ReelClip],
    plan: _Plan,
    *,
    fps: int,
    width: int,
    height: int,
    retime: str,
    burn: bool,
    title: str | None,
    credits: str | None,
    end_card: EndCardSpec | None,
    brand: ReelBrand | None,
    font: Path | None,
    workdir: Path,
) -> Any:
    writer = TextWriter(font, workdir) if font else None
    colors = brand.colors if brand else DEFAULT_COLORS
    short = min(width, height)
    fitted = _fitted_streams(clips, plan, fps=fps, width=width, height=height, retime=retime)
    parts = [fitted[0]]
    length = plan.lengths[0]
    for i, overlap in enumerate(plan.overlaps):
        nxt = fitted[i + 1]
        if overlap == 0:
            parts.append(nxt)
        else:
            joined = _concat(parts)
            kind = _XFADE[clips[i].transition]
            parts = [
                ffmpeg.filter(
                    [joined, nxt],
                    "xfade",
                    transition=kind,
                    duration=f"{overlap / fps:.6f}",
                    offset=f"{(length - overlap) / fps:.6f}",
                ).filter("settb", f"1/{fps}")
            ]
        length += plan.lengths[i + 1] - overlap
    video = _concat(parts)
    if plan.fade_out:
        video = video.filter("fade", t="out", start_frame=length - plan.fade_out, nb_frames=plan.fade_out)
    sequence = [video]
    if title and writer:
        card = title_card(title, TITLE_SECONDS, fps, width, height, writer, max(12, short // 10), colors)
        sequence.insert(0, card)
    if credits and writer:
        card = title_card(credits, END_SECONDS, fps, width, height, writer, max(10, short // 16), colors)
        sequence.append(card)
    if end_card and writer:
        sequence.append(cta_card(end_card, fps, width, height, writer, colors))
    video = _concat(sequence)
    if burn and writer:
        size = max(10, round(short * 0.055))
        margin = max(4, round(height * 0.07))
        for seg in plan.segments:
            if seg.caption:
                enable = f"between(n,{seg.caption_start},{seg.caption_end - 1})"
                video = writer.draw(
                    video,
                    seg.caption,
                    width=width,
                    height=height,
                    size=size,
                    bottom=margin,
                    enable=enable,
                    color=colors["caption"],
                    box=colors["caption_box"],
                )
    if brand is not None and brand.logo is not None:
        video = overlay_logo(video, brand.logo, width, height)
    return video.filter("format", "yuv420p")


def planned_segments(clips: Sequence[ReelClip], *, fps: int, **layout: Any) -> list[Segment]:
    """Where each clip would sit in the reel :func:`assemble_reel` makes with these settings (``captions``,
    ``title``, ``credits``, ``end_card``, ``font``), planned by probing only (no encoding)."""
    plan, *_ = _layout(clips, fps=fps, warn=lambda message: None, **layout)
    return plan.segments
