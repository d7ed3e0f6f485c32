"""Face-aware reframing: the crop follows the faces, keeps everyone who fits, else a blurred fill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storyreel.reframe import FaceTrack, Framing, face_track, plan_framing

W, H, FRAMES, FPS = 720, 480, 49, 8.0


def track(*boxes_per_sample: list[tuple[float, float, float, float]], frames: int = FRAMES) -> FaceTrack:
    """A track with samples spread over the clip, each with the given face boxes (l, t, r, b)."""
    indices = np.linspace(0, frames - 1, len(boxes_per_sample)).round().astype(int)
    samples = [
        (int(i), [(*b, 1.0) for b in boxes]) for i, boxes in zip(indices, boxes_per_sample, strict=True)
    ]
    return FaceTrack(W, H, frames, FPS, samples)


def offsets(framing: Framing) -> np.ndarray:
    """The crop's offset at every frame, from its keyframes (what the ffmpeg expression computes)."""
    frames, values = zip(*framing.path, strict=True)
    return np.interp(np.arange(FRAMES), frames, values)


def test_same_shape_is_only_scaled() -> None:
    assert plan_framing(track([(100, 100, 200, 200)]), 1440, 960, 1) == Framing("fit")


def test_a_vertical_crop_follows_one_face_smoothly_and_keeps_it_inside() -> None:
    moving = [[(x, 150, x + 90, 240)] for x in np.linspace(60, 560, 9)]  # walks left to right
    framing = plan_framing(track(*moving), 1080, 1920, 1)
    assert framing.kind == "crop" and framing.crop == (270, 480) and framing.y == "0"
    path = offsets(framing)
    assert path.min() >= 0 and path.max() <= W - 270
    assert path[-1] - path[0] > 350  # it followed the face across the frame
    assert np.abs(np.diff(path)).max() < 25  # smoothly: no jumps between samples
    for index, boxes in track(*moving).samples:
        left, _, right, _, _ = boxes[0]
        assert path[index] <= left and right <= path[index] + 270  # the face stays in the crop
    assert framing.x.startswith("if(lt(n,") and "n-" in framing.x


def test_two_people_who_fit_are_both_kept() -> None:
    pair = [[(250, 150, 320, 220), (380, 160, 450, 230)]] * 5
    framing = plan_framing(track(*pair), 480, 480, 2)  # square: a 480x480 window
    assert framing.kind == "crop"
    assert offsets(framing).max() <= 250 and offsets(framing).min() + 480 >= 450


def test_a_wider_format_crops_top_and_bottom_below_the_faces() -> None:
    framing = plan_framing(track(*[[(300, 40, 380, 120)]] * 4), 854, 360, 1)
    assert framing.kind == "crop" and framing.crop == (720, 302) and framing.x == "0"
    assert offsets(framing).max() <= 40  # the face stays in, with room for the body below it


def test_people_who_do_not_fit_get_a_blurred_fill_and_a_reason() -> None:
    apart = [[(40, 150, 130, 240), (560, 150, 650, 240)]] * 5
    framing = plan_framing(track(*apart), 1080, 1920, 2)
    assert framing.kind == "fill" and "2 people do not fit side by side in its 270x480 crop" in framing.note


def test_missing_people_and_no_faces_fall_back_to_fill_shots_without_cast_are_centred() -> None:
    one_of_two = [[(300, 150, 390, 240)]] * 5
    assert "not every person was found" in plan_framing(track(*one_of_two), 1080, 1920, 2).note
    assert "no face found" in plan_framing(track([], [], []), 1080, 1920, 1).note
    scene = plan_framing(track([], []), 1080, 1920, 0)
    assert scene.kind == "crop" and scene.x == "225.0"


def test_stray_detections_beyond_the_cast_are_ignored() -> None:
    noisy = [[(300, 150, 390, 240), (10, 400, 20, 410), (700, 10, 712, 22)]] * 5  # a face and two specks
    assert plan_framing(track(*noisy), 1080, 1920, 1).kind == "crop"


@pytest.mark.slow
def test_faces_are_found_in_a_preview_clip_and_cached_by_key(tmp_path_factory, tmp_path: Path) -> None:
    from storyreel.runner import RenderOptions, render_stories
    from tests.helpers.projects import make_project

    story = make_project(tmp_path_factory, tmp_path / "p", shots=2, size="480x320", fps=8, seconds=2.0)
    render_stories([story], RenderOptions(engine="preview", reel=False))
    meta = (story.parent / "renders" / "s2.json").read_text()
    key = __import__("json").loads(meta)["key"]
    clip = story.parent / "renders" / "s2.mp4"  # eileen alone
    cache = tmp_path / "cache"
    found = face_track(clip, cache, key, people=1)
    assert (cache / f"{key}.json").is_file()
    with_faces = [boxes for _, boxes in found.samples if boxes]
    assert len(with_faces) == len(found.samples) >= 3
    left, _, right, _, _ = with_faces[0][0]
    assert 120 < (left + right) / 2 < 360 and right - left > 20  # the card in the middle of the frame
    assert face_track(clip, cache, key, people=1) == found  # read back from the cache
    framing = plan_framing(found, 270, 480, 1)
    assert framing.kind == "crop"


def test_without_face_tools_the_reel_falls_back_to_fill_and_says_why(tmp_path: Path, monkeypatch) -> None:
    from ingredients_model.errors import IngredientsError
    from storyreel import story_reels
    from storyreel.reel import ReelClip
    from storyreel.story_reels import frame_clips
    from tests.helpers.media import make_clip

    def missing(*args, **kwargs):
        raise IngredientsError("the offline face models are not installed", "pip install dlib-bin")

    monkeypatch.setattr(story_reels, "face_track", missing)
    clip = ReelClip("a", make_clip(tmp_path / "a.mp4", 8), people=1)
    (framed,) = frame_clips([clip], None, 48, 72)
    assert framed.framing.kind == "fill" and "offline face models are not installed" in framed.framing.note
    (same,) = frame_clips([clip], None, 144, 96)  # the clip's own shape: nothing to look for
    assert same.framing == Framing("fit")
