"""The cast library: which folder is in force, its members, and `cast add --library` with consent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from storyreel.cast import FACES_FILE, list_cast
from storyreel.cast_library import (
    CAST_LIBRARY_ENV,
    CastLibrary,
    add_member,
    resolve_cast_library,
    story_cast_library,
)
from storyreel.consent import CONSENT_FILE, Consent, read_consent
from storyreel.errors import StoryreelError
from storyreel.project import init_project
from tests.helpers.projects import CAST, CONSENT, example_cast, make_library


def test_the_option_wins_over_the_story_which_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAST_LIBRARY_ENV, str(tmp_path / "from-env"))
    story = tmp_path / "project"
    assert resolve_cast_library(tmp_path / "opt", "../shared", story) == CastLibrary(tmp_path / "opt")
    found = resolve_cast_library(None, "../shared", story)
    assert found is not None and found.root == tmp_path / "shared" and "story.yaml" in found.source
    found = resolve_cast_library(None, None, story)
    assert found is not None and found.root == tmp_path / "from-env" and found.source == "$STORYREEL_CAST"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    found = resolve_cast_library(None, "~/cast", story)
    assert found is not None and found.root == tmp_path / "home" / "cast"
    monkeypatch.delenv(CAST_LIBRARY_ENV)
    assert resolve_cast_library(None, None, story) is None
    assert resolve_cast_library(None, "  ", story) is None


def test_story_cast_library_reads_stories_that_do_not_validate(tmp_path: Path) -> None:
    story = tmp_path / "story.yaml"
    story.write_text("title: t\ncast_library: ../lib\nshots: [{id: a, prompt: '{nobody}'}]\n")
    assert story_cast_library(story) == "../lib"
    story.write_text("title: [unclosed\n")
    assert story_cast_library(story) is None
    assert story_cast_library(tmp_path / "missing.yaml") is None


def test_members_come_with_absolute_photos_and_their_description(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    library = CastLibrary(make_library(tmp_path_factory, tmp_path / "lib"))
    assert library.names() == sorted(CAST)
    nora = library.member("nora")
    assert nora.photos == (library.root / "nora" / "1.jpg",) and nora.description == CAST["nora"]
    assert nora.directory == library.root / "nora"
    assert [row.name for row in list_cast(library)] == sorted(CAST)  # the cast module works on it as is

    with pytest.raises(StoryreelError, match="no member 'carol'") as caught:
        library.member("carol")
    assert "members: eileen, nora, sam" in (caught.value.hint or "")
    (library.root / "sam" / "1.jpg").unlink()
    with pytest.raises(StoryreelError, match="missing photos"):
        library.member("sam")
    with pytest.raises(StoryreelError, match="does not exist"):
        CastLibrary(tmp_path / "nowhere").member("nora")
    assert CastLibrary(tmp_path / "nowhere").names() == []


def test_a_new_library_member_needs_consent_and_a_description(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    library = CastLibrary(tmp_path / "lib")
    photo = example_cast(tmp_path_factory) / "nora" / "1.jpg"
    with pytest.raises(StoryreelError, match="needs a consent record") as caught:
        add_member(library, "nora", [photo], description="a woman")
    assert "--consent-by" in (caught.value.hint or "")
    with pytest.raises(StoryreelError, match="needs a description"):
        add_member(library, "nora", [photo], consent=CONSENT)
    assert not library.root.exists()  # checked before anything was copied

    result, record = add_member(library, "nora", [photo], description="a woman", consent=CONSENT)
    assert record == Consent.model_validate(CONSENT) == read_consent(library.root / "nora")
    assert result.directory == library.root / "nora" and (result.directory / FACES_FILE).is_file()
    assert "nora: {library: nora}" in result.snippet and "cast_library:" in result.snippet

    # the consent options update the record; the photos are already there
    again, renewed = add_member(library, "nora", [photo], consent={"valid_until": "2030-01-31"})
    assert not again.added and renewed is not None and str(renewed.valid_until) == "2030-01-31"
    assert renewed.given_by == CONSENT["given_by"] and read_consent(library.root / "nora") == renewed


def test_a_damaged_record_is_replaced_only_by_a_complete_one(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    library = CastLibrary(make_library(tmp_path_factory, tmp_path / "lib"))
    photo = library.root / "nora" / "1.jpg"
    (library.root / "nora" / CONSENT_FILE).write_text("given_by: [\n")
    with pytest.raises(StoryreelError, match="not a valid consent record"):
        add_member(library, "nora", [photo])
    _, record = add_member(library, "nora", [photo], consent=CONSENT)
    assert record == read_consent(library.root / "nora")


def test_project_members_may_carry_a_record_too(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    project = init_project(tmp_path / "p")
    photo = example_cast(tmp_path_factory) / "sam" / "1.jpg"
    _, record = add_member(project, "sam", [photo])  # a project member needs none
    assert record is None and not (project.cast_dir / "sam" / CONSENT_FILE).exists()
    _, record = add_member(project, "sam", [photo], consent=CONSENT)
    assert record is not None and read_consent(project.cast_dir / "sam") == record


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_a_read_only_library_leaves_identities_to_the_project(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    library = CastLibrary(make_library(tmp_path_factory, tmp_path / "lib"))
    assert library.render_cache_dir() == library.cache_dir
    shutil.rmtree(library.state_dir, ignore_errors=True)
    library.root.chmod(0o555)
    try:
        assert library.render_cache_dir() is None
    finally:
        library.root.chmod(0o755)


def test_identities_go_to_the_library_when_it_can_be_written(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = CastLibrary(make_library(tmp_path_factory, tmp_path / "lib"))
    assert library.render_cache_dir() == library.root / ".storyreel" / "cache"
    assert library.identity_cache_dir == library.root / ".storyreel" / "cache" / "identities"
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a read-only folder answers
    assert library.render_cache_dir() is None
