"""Property test: whatever the bytes, the loader returns a Story or raises StoryreelError — nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from storyreel.errors import StoryreelError
from storyreel.story import Story, StoryValidationError, load_story
from tests.helpers.media import make_tone

VALID = """\
title: Coffee Break
output: {size: 720x480, fps: 24, file: reel.mp4, captions: both}
defaults: &d {engine: preview, seed: 3, seconds: 4, transition: {type: crossfade, seconds: 0.5}}
cast:
  alice: {photos: [cast/alice/1.jpg], description: a woman, face: 1}
  bob: {photos: [cast/bob/1.jpg], description: a man}
shots:
  - &one {id: opening, prompt: "{alice} and {bob} at a {{cafe}}", caption: Monday, seconds: 3}
  - {<<: *one, id: two, cast: [bob, alice], frames: 33, seconds: null}
  - id: three
    prompt: |
      {bob} walks away
    transition: {type: fade, seconds: 1}
music: {file: music/theme.wav}
credits: Thanks
"""

FIELD_NAMES = [
    *("title", "output", "defaults", "cast", "shots", "music", "credits", "size", "fps", "file", "captions"),
    *("engine", "model", "steps", "guidance", "seed", "seconds", "frames", "transition", "type", "photos"),
    *("description", "face", "id", "prompt", "caption", "router", "alice", "bob", "volume", "<<"),
]
YAML_CHARS = [*":-{}[],&*!|>'\"#%@` \n\t?.0123456789abxyz\\", "\x00", "\xe9", "\ufeff", "{{", "}}"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        ["cast/alice/1.jpg", "../x.jpg", "/etc/passwd", "720x480", "{alice}", "{zed}", "crossfade"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=25,
)
shots = st.lists(
    st.dictionaries(st.sampled_from(FIELD_NAMES[14:]), values, max_size=6)
    | st.fixed_dictionaries({"id": st.text(max_size=6), "prompt": st.text(max_size=30)}),
    max_size=4,
)
structured = st.builds(
    lambda base, extra: yaml.safe_dump({**base, **extra}, allow_unicode=True),
    st.fixed_dictionaries(
        {"title": scalars, "shots": shots},
        optional={"cast": st.dictionaries(st.sampled_from(["alice", "bob", "Carl"]), values, max_size=3)},
    ),
    st.dictionaries(st.sampled_from(FIELD_NAMES[:7]), values, max_size=3),
)

CAST = {
    "alice": {"photos": ["cast/alice/1.jpg"], "description": "a woman"},
    "bob": {"photos": ["cast/bob/1.jpg"], "description": "a man"},
}
plausible_shot = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["a", "b", "B", "c-1", "d e"]),
        "prompt": st.sampled_from(
            ["{alice} waves", "{alice} and {bob}", "a street", "{bob} {{x}}", "{carl}"]
        ),
    },
    optional={
        "seconds": st.floats(-1, 10),
        "frames": st.integers(-1, 60),
        "cast": st.lists(st.sampled_from(["alice", "bob", "carl"]), max_size=3),
        "seed": st.integers(-1, 2**33),
        "transition": st.fixed_dictionaries(
            {"type": st.sampled_from(["cut", "crossfade", "fade", "wipe"])},
            optional={"seconds": st.floats(0, 5)},
        ),
    },
)
plausible = st.builds(
    lambda shots, size, seed: yaml.safe_dump(
        {"title": "T", "output": {"size": size}, "defaults": {"seed": seed}, "cast": CAST, "shots": shots}
    ),
    st.lists(plausible_shot, min_size=1, max_size=4, unique_by=lambda shot: shot["id"].lower()),
    st.sampled_from(["720x480", "721x480", "1280x720", "x"]),
    st.integers(-5, 2**33),
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """The valid story with a few random edits: YAML-significant characters inserted, spans deleted."""
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.sampled_from(YAML_CHARS)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 12)) :]
    return text


documents = st.one_of(
    plausible,
    mutated(),
    structured,
    st.lists(st.sampled_from(YAML_CHARS), max_size=60).map("".join),
    st.text(max_size=60),
    st.binary(max_size=80),
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("property-project")
    for name in ("alice", "bob"):
        (root / "cast" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / "cast" / name / "1.jpg")
    (root / "music").mkdir()
    make_tone(root / "music" / "theme.wav", 0.2)
    return root


def test_the_valid_base_document_loads(project: Path) -> None:
    (project / "story.yaml").write_text(VALID, encoding="utf-8")
    story = load_story(project / "story.yaml")
    assert [s.cast for s in story.shots] == [["alice", "bob"], ["bob", "alice"], ["bob"]]


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents)
def test_loader_raises_only_storyreel_errors(project: Path, document: str | bytes) -> None:
    path = project / "story.yaml"
    if isinstance(document, str):
        path.write_text(document, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(document)
    try:
        story = load_story(path)
    except StoryValidationError as err:
        event(f"{len(err.problems)} problem(s)" if len(err.problems) < 3 else "3+ problems")
        assert err.problems
        assert all(p.file == path and str(p) for p in err.problems)
        assert str(err).count("\n") < 50
        return
    except StoryreelError:
        event("other StoryreelError")
        return
    event("valid story")
    assert isinstance(story, Story)
    for shot in story.shots:
        assert shot.seconds is not None and shot.seconds > 0
        assert set(shot.cast or []) <= set(story.cast)
        assert isinstance(shot.resolved_prompt(story), str)
    for member in story.cast.values():
        assert member.photos and all(p.is_relative_to(project) and p.is_file() for p in member.photos)
