"""Brand finishing: logo, font and colours for cards and captions, the call-to-action card, and the
music's loudness normalised per reel (EBU R128)."""

from __future__ import annotations

import shutil
from pathlib import Path

import ffmpeg
import numpy as np
import pytest
from PIL import Image

from storyreel.colors import DEFAULT_COLORS, ffmpeg_color, normalize_color
from storyreel.ffmpeg_tools import find_font, probe_video, read_frames
from storyreel.loudness import TARGET_LUFS, measure
from storyreel.reel import ReelBrand, ReelClip, ReelMusic, assemble_reel
from storyreel.story import StoryValidationError, load_story
from tests.helpers.media import make_clip, make_tone


class Logo:
    def __init__(self, file: Path, position: str = "top-right", opacity: float = 1.0, size: float = 0.25):
        self.file, self.position, self.opacity, self.size = file, position, opacity, size


class Card:
    def __init__(self, text: str, url: str | None, seconds: float = 1.0):
        self.text, self.url, self.seconds = text, url, seconds


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("brand")
    make_clip(folder / "grey.mp4", 24, fps=24, size="160x96", source="color=c=gray")
    Image.new("RGBA", (40, 40), (255, 0, 0, 255)).save(folder / "logo.png")
    make_tone(folder / "tone.wav", 2.0)
    return folder


def _colors(**changes: str) -> dict[str, str]:
    return {**DEFAULT_COLORS, **{k: normalize_color(v) for k, v in changes.items()}}


def test_colours() -> None:
    assert normalize_color("White") == "#ffffffff" and normalize_color("#0a0b0c80") == "#0a0b0c80"
    assert ffmpeg_color("#ff000080") == "0xFF0000@0.502"
    with pytest.raises(ValueError, match="#RRGGBB"):
        normalize_color("#12345")


def test_logo_at_its_corner_with_its_opacity_and_the_cta_card(media: Path, tmp_path: Path) -> None:
    clip = ReelClip("a", media / "grey.mp4")
    brand = ReelBrand(
        logo=Logo(media / "logo.png", "top-right", 1.0),
        colors=_colors(background="#102030", accent="#00ff00"),
        end_card=Card("Buy now", "shop.example.com"),
    )
    result = assemble_reel([clip], tmp_path / "reel.mp4", fps=24, width=160, height=96, brand=brand)
    assert result.frames == 24 + 24  # the clip, then one second of call-to-action card
    first, card = read_frames(result.path, [5, 36])
    pixels = np.asarray(first).astype(int)
    assert pixels[10, 140, 0] > 200 and pixels[10, 140, 1] < 60  # the red logo, top right
    assert abs(pixels[80, 20] - 128).max() < 20  # the grey clip elsewhere
    card_pixels = np.asarray(card).astype(int)
    green = (card_pixels[..., 1] > 150) & (card_pixels[..., 0] < 100)
    assert green.sum() > 20  # the URL in the accent colour
    background = card_pixels[5, 5]  # the logo is over the cards too, but not in the corner
    assert abs(background - [16, 32, 48]).max() < 12

    half = ReelBrand(logo=Logo(media / "logo.png", "bottom-left", 0.5))
    faded = assemble_reel([clip], tmp_path / "half.mp4", fps=24, width=160, height=96, brand=half)
    pixel = np.asarray(read_frames(faded.path, [5])[0]).astype(int)[85, 15]
    assert 160 < pixel[0] < 220 and 40 < pixel[1] < 100  # half red, half grey


def test_captions_take_the_brand_colours_and_font(media: Path, tmp_path: Path) -> None:
    font = tmp_path / "brand.ttf"
    shutil.copyfile(find_font(), font)
    clip = ReelClip("a", media / "grey.mp4", caption="HELLO")
    brand = ReelBrand(font=font, colors=_colors(caption="#00ff00", caption_box="#0000ffff"))
    result = assemble_reel(
        [clip], tmp_path / "cap.mp4", fps=24, width=160, height=96, captions="burn", brand=brand
    )
    pixels = np.asarray(read_frames(result.path, [12])[0]).astype(int)
    bottom = pixels[60:]
    assert ((bottom[..., 2] > 200) & (bottom[..., 0] < 60)).sum() > 50  # the blue box
    assert ((bottom[..., 1] > 150) & (bottom[..., 1] > bottom[..., 2] + 40)).sum() > 5  # green text


def _loudness(path: Path) -> float:
    return measure(ffmpeg.input(str(path)).audio, TARGET_LUFS, what="the test reel").integrated


def test_music_is_normalised_to_the_target_loudness_per_reel(media: Path, tmp_path: Path) -> None:
    clip = ReelClip("a", media / "grey.mp4")
    quiet = ReelMusic(media / "tone.wav", volume=0.05, fade_in=0, fade_out=0, loudness=TARGET_LUFS)
    result = assemble_reel([clip], tmp_path / "loud.mp4", fps=24, width=160, height=96, music=quiet)
    assert result.loudness is not None and result.loudness < TARGET_LUFS - 5  # the sine as it was
    assert _loudness(result.path) == pytest.approx(TARGET_LUFS, abs=1.0)
    raw = ReelMusic(media / "tone.wav", volume=0.05, fade_in=0, fade_out=0, loudness=None)
    plain = assemble_reel([clip], tmp_path / "plain.mp4", fps=24, width=160, height=96, music=raw)
    assert plain.loudness is None and _loudness(plain.path) < TARGET_LUFS - 10  # volume 0.05, no normalising
    assert probe_video(plain.path).has_audio


BRANDED = """\
title: Branded
output: {{size: 160x96, fps: 24, captions: burn, title_card: false}}
defaults: {{engine: preview, seconds: 1}}
shots:
  - {{id: one, prompt: a quiet beach, caption: Hello}}
brand:
  logo: {{file: {logo}, position: {position}, opacity: 0.7}}
  font: {font}
  colors: {{text: "#fff", background: navy, accent: {accent}}}
  end_card: {{text: "Get it at ${{shop}}", url: "${{shop}}/new", seconds: 2}}
vars: {{shop: example.com}}
"""


def test_brand_in_story_yaml_is_validated_with_lines(media: Path, tmp_path: Path) -> None:
    shutil.copyfile(media / "logo.png", tmp_path / "logo.png")
    shutil.copyfile(find_font(), tmp_path / "font.ttf")
    (tmp_path / "story.yaml").write_text(
        BRANDED.format(logo="logo.png", position="top-left", font="font.ttf", accent='"#ffcc00"')
    )
    story = load_story(tmp_path / "story.yaml")
    assert story.brand.logo.file == tmp_path / "logo.png" and story.brand.colors.background == "#000080ff"
    assert (
        story.brand.end_card.text == "Get it at example.com" and story.brand.end_card.url == "example.com/new"
    )
    (tmp_path / "story.yaml").write_text(
        BRANDED.format(logo="logos/none.png", position="upper-left", font="logo.png", accent="'#ffcc0'")
    )
    with pytest.raises(StoryValidationError) as caught:
        load_story(tmp_path / "story.yaml")
    found = {p.path: (p.line, p.message) for p in caught.value.problems}
    assert found["brand.logo.file"] == (7, "logo not found: logos/none.png")
    assert found["brand.logo.position"][0] == 7 and "top-left" in found["brand.logo.position"][1]
    assert found["brand.font"] == (8, "'logo.png' is not a TrueType/OpenType font")
    assert found["brand.colors.accent"][0] == 9 and "bad colour '#ffcc0'" in found["brand.colors.accent"][1]


def test_a_branded_story_renders_its_card_and_logo(media: Path, tmp_path: Path) -> None:
    from storyreel.outputs import build_outputs
    from storyreel.project import Project
    from storyreel.runner import RenderOptions, render_stories

    shutil.copyfile(media / "logo.png", tmp_path / "logo.png")
    shutil.copyfile(find_font(), tmp_path / "font.ttf")
    (tmp_path / "story.yaml").write_text(
        BRANDED.format(logo="logo.png", position="top-left", font="font.ttf", accent='"#00ff00"')
    )
    (report,) = render_stories([tmp_path / "story.yaml"], RenderOptions())
    info = probe_video(report.reel)
    assert info.frames == 24 + 48  # one second of shot, two of call-to-action card
    corner = np.asarray(read_frames(report.reel, [10])[0]).astype(int)[8, 8]
    assert corner[0] > 150 and corner[1] < 120  # the logo at 70 %
    story = load_story(tmp_path / "story.yaml")
    (result,), _ = build_outputs(story, Project.from_story(story), review=False)
    assert result.frames == info.frames
