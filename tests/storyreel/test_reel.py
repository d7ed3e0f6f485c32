"""Reel assembly on small ffmpeg-made clips: lengths to the frame, transitions, captions, music, fast path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from storyreel.errors import StoryreelError
from storyreel.ffmpeg_tools import ffmpeg_exe, find_font, probe_video
from storyreel.reel import ReelClip, ReelMusic, ReelWarning, assemble_reel, subtitles_text
from tests.helpers.media import make_clip, make_tone

W, H = 96, 64


def frame_mean(path: Path, index: int, height: int = H, width: int = W) -> float:
    """Mean brightness (0-255) of frame ``index`` of a video."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-vf", f"select=eq(n\\,{index})", "-frames:v", "1",
         "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        check=True, capture_output=True,
    )  # fmt: skip
    return float(np.frombuffer(proc.stdout, np.uint8).reshape(height, width).mean())


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model-like clips (8 fps, 72x48), reel-ready clips (24 fps, reel size), a white clip and a tone."""
    d = tmp_path_factory.mktemp("clips")
    make_clip(d / "a.mp4", 49)  # 6.125 s → 147 frames at 24 fps
    make_clip(d / "b.mp4", 17, source="testsrc2")  # 2.125 s → 51 frames
    make_clip(d / "c.mp4", 24, fps=24, size=f"{W}x{H}")  # already at the reel fps and size
    make_clip(d / "c2.mp4", 30, fps=24, size=f"{W}x{H}", source="testsrc2")
    make_clip(d / "white.mp4", 16, source="color=c=white")  # 2 s → 48 frames
    make_tone(d / "tone.wav", 1.0)
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 8)
    return d


def _clips(
    d: Path, names: str, transition: str = "cut", seconds: float = 0.5, captions=None
) -> list[ReelClip]:
    captions = captions or {}
    return [ReelClip(n, d / f"{n}.mp4", transition, seconds, captions.get(n)) for n in names.split()]


def test_probe_video(clips_dir: Path) -> None:
    info = probe_video(clips_dir / "a.mp4")
    assert (info.width, info.height, info.fps, info.frames, info.codec) == (72, 48, 8.0, 49, "h264")
    assert info.duration == pytest.approx(49 / 8)
    assert info.pix_fmt == "yuv420p" and not info.has_audio and info.subtitle_streams == 0
    with pytest.raises(StoryreelError, match=r"corrupt\.mp4"):
        probe_video(clips_dir / "corrupt.mp4")


@pytest.mark.parametrize("transition", ["cut", "crossfade", "fade"])
def test_length_is_sum_minus_overlaps_to_the_frame(clips_dir: Path, tmp_path: Path, transition: str) -> None:
    clips = _clips(clips_dir, "a b c", transition, 0.5)
    clips[-1].transition = "cut"
    result = assemble_reel(clips, tmp_path / "reel.mp4", width=W, height=H, captions="none", title=None)
    overlap = 0 if transition == "cut" else 12
    expected = 147 + 51 + 24 - 2 * overlap
    assert result.planned_frames == expected
    info = probe_video(tmp_path / "reel.mp4")
    assert info.frames == result.frames == expected
    assert (info.width, info.height, info.fps, info.codec, info.pix_fmt) == (W, H, 24.0, "h264", "yuv420p")
    assert info.duration == pytest.approx(expected / 24)
    assert [s.start for s in result.segments] == [0, 147 - overlap, 147 + 51 - 2 * overlap]
    assert not result.fast_path
    assert not list(tmp_path.glob("reel.mp4*.partial"))


@pytest.mark.parametrize(("transition", "dark"), [("crossfade", False), ("fade", True)])
def test_fade_goes_through_black_and_crossfade_does_not(
    clips_dir: Path, tmp_path: Path, transition: str, dark: bool
) -> None:
    clips = [
        ReelClip("w1", clips_dir / "white.mp4", transition, 1.0),
        ReelClip("w2", clips_dir / "white.mp4"),
    ]
    result = assemble_reel(clips, tmp_path / "reel.mp4", width=W, height=H, captions="none")
    assert result.frames == 48 + 48 - 24
    darkest = min(frame_mean(result.path, n) for n in range(24, 48, 3))  # during the transition
    assert (darkest < 20) if dark else (darkest > 200)
    assert frame_mean(result.path, 5) > 200


def test_last_shot_fade_fades_out_without_changing_length(clips_dir: Path, tmp_path: Path) -> None:
    clips = [ReelClip("w1", clips_dir / "white.mp4"), ReelClip("w2", clips_dir / "white.mp4", "fade", 1.0)]
    result = assemble_reel(clips, tmp_path / "reel.mp4", width=W, height=H, captions="none")
    assert result.frames == 96
    assert frame_mean(result.path, 95) < 20
    assert frame_mean(result.path, 60) > 200


def test_too_long_transition_is_clamped_with_a_warning(clips_dir: Path, tmp_path: Path) -> None:
    clips = [ReelClip("a", clips_dir / "a.mp4", "crossfade", 5.0), ReelClip("b", clips_dir / "b.mp4")]
    with pytest.warns(ReelWarning, match="shot 'a'.*crossfade"):
        result = assemble_reel(clips, tmp_path / "reel.mp4", width=W, height=H, captions="none")
    assert result.frames == 147  # the whole of b (51 frames) overlaps a
    assert any("shortened" in w for w in result.warnings)


def test_captions_as_subtitle_stream_and_sidecar(clips_dir: Path, tmp_path: Path) -> None:
    clips = _clips(clips_dir, "a b", "crossfade", 0.5, {"a": "Monday morning", "b": 'Café "Ørsted" & <co>'})
    result = assemble_reel(clips, tmp_path / "reel.mp4", width=W, height=H, captions="subtitles")
    assert not result.captions_burned
    assert probe_video(result.path).subtitle_streams == 1
    srt = (tmp_path / "reel.srt").read_text(encoding="utf-8")
    assert result.subtitles == tmp_path / "reel.srt"
    # a's caption runs until the middle of the 12-frame crossfade (frame 141 of 186), b's from there
    assert "1\n00:00:00,000 --> 00:00:05,875\nMonday morning\n" in srt
    assert '2\n00:00:05,875 --> 00:00:07,750\nCafé "Ørsted" & <co>\n' in srt


def test_captions_none_removes_stale_sidecar(clips_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "reel.srt").write_text("old")
    clips = _clips(clips_dir, "c", captions={"c": "hello"})
    result = assemble_reel(clips, tmp_path / "reel.mp4", width=W, height=H, captions="none")
    assert result.subtitles is None and not (tmp_path / "reel.srt").exists()
    assert probe_video(result.path).subtitle_streams == 0


@pytest.mark.skipif(find_font() is None, reason="no TrueType font on this machine")
def test_burned_captions_change_the_picture(clips_dir: Path, tmp_path: Path) -> None:
    clips = [ReelClip("w", clips_dir / "white.mp4", caption="Hello there")]
    plain = assemble_reel(clips, tmp_path / "plain.mp4", width=W, height=H, captions="none")
    burned = assemble_reel(clips, tmp_path / "burned.mp4", width=W, height=H, captions="burn")
    assert burned.captions_burned and burned.subtitles is None
    assert probe_video(burned.path).subtitle_streams == 0
    assert frame_mean(burned.path, 10) < frame_mean(plain.path, 10) - 3  # the dark caption box


def test_music_is_looped_to_the_reel_length_and_faded(clips_dir: Path, tmp_path: Path) -> None:
    clips = _clips(clips_dir, "a b", "fade", 0.5)
    music = ReelMusic(clips_dir / "tone.wav", volume=0.5, fade_in=0.5, fade_out=1.0)
    result = assemble_reel(clips, tmp_path / "reel.mp4", width=W, height=H, captions="none", music=music)
    info = probe_video(result.path)
    assert info.has_audio and info.audio_codec == "aac"
    assert info.audio_duration == pytest.approx(result.duration, abs=0.05)
    assert result.frames == 147 + 51 - 12


def test_music_longer_than_the_reel_is_trimmed(clips_dir: Path, tmp_path: Path) -> None:
    long_tone = make_tone(tmp_path / "long.wav", 5.0)
    result = assemble_reel(
        _clips(clips_dir, "c"), tmp_path / "reel.mp4", width=W, height=H, music=ReelMusic(long_tone)
    )
    assert probe_video(result.path).audio_duration == pytest.approx(1.0, abs=0.05)


def test_missing_or_unreadable_music_is_a_clear_error(clips_dir: Path, tmp_path: Path) -> None:
    clips = _clips(clips_dir, "c")
    with pytest.raises(StoryreelError, match="music file not found"):
        assemble_reel(clips, tmp_path / "r.mp4", width=W, height=H, music=ReelMusic(tmp_path / "nope.mp3"))
    (tmp_path / "bad.mp3").write_bytes(b"not audio at all" * 64)
    with pytest.raises(StoryreelError, match="has no readable audio"):
        assemble_reel(clips, tmp_path / "r.mp4", width=W, height=H, music=ReelMusic(tmp_path / "bad.mp3"))
    assert not (tmp_path / "r.mp4").exists()


def test_fast_path_when_clips_match(clips_dir: Path, tmp_path: Path) -> None:
    clips = _clips(clips_dir, "c c2 c", captions={"c2": "second"})
    result = assemble_reel(clips, tmp_path / "reel.mp4", width=W, height=H, captions="subtitles")
    assert result.fast_path
    info = probe_video(result.path)
    assert info.frames == result.frames == 24 + 30 + 24
    assert info.subtitle_streams == 1


@pytest.mark.parametrize(
    "change",
    [
        {"transition": "crossfade"},
        {"title": "A title"},
        {"captions": "burn"},
        {"size": (W + 2, H)},
        {"music": True},
    ],
)
def test_fast_path_not_taken(clips_dir: Path, tmp_path: Path, change: dict) -> None:
    if ("title" in change or change.get("captions") == "burn") and find_font() is None:
        pytest.skip("no TrueType font on this machine")
    clips = _clips(clips_dir, "c c2", change.get("transition", "cut"), 0.25, {"c": "hi"})
    width, height = change.get("size", (W, H))
    result = assemble_reel(
        clips,
        tmp_path / "reel.mp4",
        width=width,
        height=height,
        captions=change.get("captions", "subtitles"),
        title=change.get("title"),
        music=ReelMusic(clips_dir / "tone.wav") if "music" in change else None,
    )
    assert not result.fast_path
    assert result.frames == result.planned_frames


def test_mismatched_clip_sizes_take_the_slow_path(clips_dir: Path, tmp_path: Path) -> None:
    result = assemble_reel(
        _clips(clips_dir, "a c"), tmp_path / "reel.mp4", width=W, height=H, captions="none"
    )
    assert not result.fast_path and result.frames == 147 + 24


@pytest.mark.skipif(find_font() is None, reason="no TrueType font on this machine")
def test_title_and_end_cards_add_their_length(clips_dir: Path, tmp_path: Path) -> None:
    result = assemble_reel(
        _clips(clips_dir, "c"), tmp_path / "reel.mp4", width=W, height=H, title="Coffee Break",
        credits="Made with storyreel\nthanks to everyone",
    )  # fmt: skip
    assert result.frames == 72 + 24 + 96
    assert result.segments[0].start == 72
    assert "00:00:03,000 -->" not in (result.subtitles.read_text() if result.subtitles else "")


def frames_gray(path: Path, count: int) -> np.ndarray:
    proc = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-frames:v", str(count), "-f", "rawvideo",
         "-pix_fmt", "gray", "-"],
        check=True, capture_output=True,
    )  # fmt: skip
    return np.frombuffer(proc.stdout, np.uint8).reshape(-1, H, W).astype(float)


@pytest.mark.parametrize("retime", ["duplicate", "interpolate"])
def test_retiming_duplicates_or_interpolates_frames(tmp_path: Path, retime: str) -> None:
    ramp = tmp_path / "ramp.mp4"  # 8 fps, brightness +30 per frame
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "nullsrc=size=72x48:rate=8", "-vf",
         "geq=lum='min(N*30\\,255)':cb=128:cr=128", "-frames:v", "8", "-c:v", "libx264", "-pix_fmt",
         "yuv420p", str(ramp)],
        check=True,
    )  # fmt: skip
    clips = [ReelClip("ramp", ramp)]
    result = assemble_reel(clips, tmp_path / "reel.mp4", width=W, height=H, captions="none", retime=retime)
    assert result.frames == probe_video(result.path).frames == 24
    means = [round(frame.mean()) for frame in frames_gray(result.path, 9)]
    if retime == "duplicate":
        assert means[0] == means[1] == means[2] < means[3] == means[4] == means[5] < means[6]
    else:
        assert len(set(means)) >= 5, means  # in-between frames that the source does not have


def test_clips_keep_their_aspect_and_are_padded(tmp_path: Path) -> None:
    square = make_clip(tmp_path / "square.mp4", 8, size="48x48", source="color=c=white")
    result = assemble_reel(
        [ReelClip("sq", square)], tmp_path / "reel.mp4", width=W, height=H, captions="none"
    )
    frame = frames_gray(result.path, 1)[0]
    assert frame[:, :12].mean() < 20 and frame[:, -12:].mean() < 20  # black bars left and right
    assert frame[:, 20:76].mean() > 230  # the 64x64 scaled picture in the middle


def test_missing_and_corrupt_clips_name_the_shot(clips_dir: Path, tmp_path: Path) -> None:
    missing = [ReelClip("a", clips_dir / "a.mp4"), ReelClip("lost-shot", tmp_path / "lost.mp4")]
    with pytest.raises(StoryreelError, match="shot 'lost-shot'") as err:
        assemble_reel(missing, tmp_path / "reel.mp4")
    assert "storyreel render" in err.value.hint
    corrupt = [ReelClip("broken", clips_dir / "corrupt.mp4")]
    with pytest.raises(StoryreelError, match=r"shot 'broken'.*damaged"):
        assemble_reel(corrupt, tmp_path / "reel.mp4")
    assert not (tmp_path / "reel.mp4").exists()


def test_bad_options_are_user_errors(clips_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(StoryreelError, match="retime"):
        assemble_reel(_clips(clips_dir, "c"), tmp_path / "r.mp4", retime="magic")
    with pytest.raises(StoryreelError, match="even"):
        assemble_reel(_clips(clips_dir, "c"), tmp_path / "r.mp4", width=97)
    with pytest.raises(StoryreelError, match="unknown transition"):
        assemble_reel(_clips(clips_dir, "c", "wipe"), tmp_path / "r.mp4")


def test_webm_output_with_subtitles_and_music(clips_dir: Path, tmp_path: Path) -> None:
    clips = _clips(clips_dir, "c c2", "crossfade", 0.25, {"c": "one", "c2": "two"})
    result = assemble_reel(
        clips,
        tmp_path / "reel.webm",
        width=W,
        height=H,
        captions="subtitles",
        music=ReelMusic(clips_dir / "tone.wav"),
    )
    info = probe_video(result.path)
    assert info.codec == "vp9" and info.audio_codec == "opus" and info.subtitle_streams == 1
    assert info.frames == result.frames == 24 + 30 - 6
    assert (tmp_path / "reel.vtt").read_text().startswith("WEBVTT\n\n00:00:00.000 --> ")


def test_subtitles_text_formats() -> None:
    from storyreel.reel import Segment

    segs = [Segment("a", 0, 48, 0, "one", 0, 48), Segment("b", 48, 24, 0, None, 48, 72)]
    assert subtitles_text(segs, 24) == "1\n00:00:00,000 --> 00:00:02,000\none\n"
    assert subtitles_text(segs, 24, "vtt") == "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\none\n"
    assert subtitles_text(segs[1:], 24) == ""
    tricky = [Segment("a", 0, 24, 0, "line one\n\n  line two --> end ", 0, 24)]
    assert subtitles_text(tricky, 24).endswith("\nline one\nline two → end\n")


STORY = """\
title: Test Reel
output: {{size: {w}x{h}, fps: 24, file: out/reel.mp4, captions: subtitles, title_card: false}}
defaults: {{seconds: 2, transition: {{type: crossfade, seconds: 0.5}}}}
shots:
  - id: one
    prompt: a sunny beach
    caption: First
  - id: two
    prompt: a dark forest
    transition: {{type: fade, seconds: 0.25}}
{music}"""


def write_story(root: Path, clips_dir: Path, *, music: bool = False, clips: bool = True) -> Path:
    """A project with two shots whose clips are model-like (8 fps, 72x48) and reel-ready (24 fps)."""
    root.mkdir(parents=True, exist_ok=True)
    music_yaml = "music: {file: tone.wav, volume: 0.8, fade_in: 0.2, fade_out: 0.5}\n" if music else ""
    (root / "story.yaml").write_text(STORY.format(w=W, h=H, music=music_yaml))
    if music:
        (root / "tone.wav").write_bytes((clips_dir / "tone.wav").read_bytes())
    if clips:  # output.file is out/reel.mp4, but story.yaml without variables uses renders/ itself
        (root / "renders").mkdir(exist_ok=True)
        (root / "renders" / "one.mp4").write_bytes((clips_dir / "a.mp4").read_bytes())
        (root / "renders" / "two.mp4").write_bytes((clips_dir / "c.mp4").read_bytes())
    return root / "story.yaml"


def test_build_reel_from_a_story(clips_dir: Path, tmp_path: Path) -> None:
    from storyreel.project import Project
    from storyreel.story import load_story
    from storyreel.story_reels import build_reel

    story = load_story(write_story(tmp_path / "proj", clips_dir, music=True))
    path = build_reel(story, Project.from_story(story))
    assert path == tmp_path / "proj" / "out" / "reel.mp4"
    info = probe_video(path)
    assert info.frames == 147 + 24 - 12  # the last shot's fade fades out, it adds no overlap
    assert info.subtitle_streams == 1 and info.has_audio
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playable while downloading
    assert (tmp_path / "proj" / "out" / "reel.srt").read_text().endswith("First\n")


def test_build_reel_names_every_missing_shot(clips_dir: Path, tmp_path: Path) -> None:
    from storyreel.project import Project
    from storyreel.story import load_story
    from storyreel.story_reels import build_reel

    story = load_story(write_story(tmp_path / "proj", clips_dir, clips=False))
    with pytest.raises(StoryreelError, match=r"2 of 2 shots have no clip.*one, two") as err:
        build_reel(story, Project.from_story(story))
    assert "storyreel render" in err.value.hint


def test_cli_reel_reassembles_and_writes_the_review(
    clips_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from storyreel.cli import main

    root = write_story(tmp_path / "proj", clips_dir).parent
    with pytest.raises(SystemExit) as exit_info:  # clips made by hand have no record: not current
        main(["reel", str(root), "--captions", "none", "--format", "webm", "--force"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "reel:" in out and "review page:" in out
    assert probe_video(root / "out" / "reel.webm").codec == "vp9"
    assert (root / "renders" / "index.html").is_file()
    (root / "renders" / "two.mp4").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["reel", str(root / "story.yaml"), "--no-review", "--force"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "two" in err and "storyreel render" in err


def test_ffmpeg_failures_name_the_shots_whose_files_ffmpeg_mentions(tmp_path: Path) -> None:
    from storyreel.reel import _fail_naming_shots

    clips = [ReelClip("intro", tmp_path / "intro.mp4"), ReelClip("outro", tmp_path / "outro.mp4")]
    err = StoryreelError(f"ffmpeg failed while assembling:\n{tmp_path / 'outro.mp4'}: Invalid data", hint="h")
    named = _fail_naming_shots(err, clips)
    assert named.message.startswith("shot 'outro': ffmpeg failed") and named.hint == "h"
    assert _fail_naming_shots(StoryreelError("other"), clips).message == "other"


def test_progress_follows_ffmpeg_to_the_end(clips_dir: Path, tmp_path: Path) -> None:
    seen: list[tuple[float, float]] = []
    clips = _clips(clips_dir, "a b", "crossfade", 0.5)
    result = assemble_reel(clips, tmp_path / "reel.mp4", width=W, height=H, captions="none",
                           on_progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    total = result.planned_frames / 24
    assert seen and all(t == pytest.approx(total) for _, t in seen)
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == total and len(done) > 1
    assert not (tmp_path / "reel.mp4.partial").exists()


def test_progress_lines_and_failures_under_progress(clips_dir: Path, tmp_path: Path) -> None:
    from storyreel.ffmpeg_tools import progress_seconds, run_ffmpeg

    assert progress_seconds("out_time_us=1250000\n") == 1.25
    assert progress_seconds("out_time_us=N/A") is None and progress_seconds("frame=12") is None
    assert progress_seconds("out_time_us=-5") == 0.0
    seen: list[float] = []
    with pytest.raises(StoryreelError, match=r"(?s)testing.*corrupt\.mp4") as err:  # stderr is kept
        run_ffmpeg(
            ["-i", str(clips_dir / "corrupt.mp4"), "-f", "null", "-"], what="testing", progress=seen.append
        )
    assert "Invalid data" in err.value.message and seen == []
