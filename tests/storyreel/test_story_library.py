"""Stories that take people from the cast library: how they refer to members, which library is in force,
file:line problems, and consent (a use it does not allow is refused, an expired record is a warning)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storyreel.cast_library import CAST_LIBRARY_ENV
from storyreel.consent import CONSENT_FILE
from storyreel.story import StoryValidationError, load_story
from tests.helpers.projects import CAST, make_library, make_project


@pytest.fixture(autouse=True)
def no_library_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CAST_LIBRARY_ENV, raising=False)


@pytest.fixture
def library(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    return make_library(tmp_path_factory, tmp_path / "shared" / "cast")


def _project(tmp_path_factory: pytest.TempPathFactory, root: Path, **story: object) -> Path:
    return make_project(tmp_path_factory, root, shots=3, **story)


def _problems(path: Path, **kwargs: object) -> list:
    with pytest.raises(StoryValidationError) as caught:
        load_story(path, **kwargs)
    return caught.value.problems


def test_bare_names_and_library_entries_resolve_to_members(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, library: Path
) -> None:
    path = _project(
        tmp_path_factory, tmp_path / "p", from_library=("nora", "sam"), header="cast_library: ../shared/cast"
    )
    text = path.read_text().replace(
        "cast:\n", "cast:\n  boss: {library: sam, description: a man in a suit, face: 1}\n"
    )
    path.write_text(text.replace("{sam} reads", "{boss} reads"))
    story = load_story(path)
    assert story.library is not None and story.library.root == library
    assert story.cast_library == str(library)  # absolute after loading, like defaults.model
    assert list(story.cast) == ["boss", "eileen", "nora", "sam"]
    nora = story.cast["nora"]  # named in prompts only: the library's member as it is
    assert nora.photos == [library / "nora" / "1.jpg"] and nora.description == CAST["nora"]
    assert nora.from_library is not None and nora.from_library.name == "nora" and nora.library == "nora"
    boss = story.cast["boss"]  # renamed, with its own description and face
    assert boss.photos == [library / "sam" / "1.jpg"] and boss.description == "a man in a suit"
    assert boss.face == 1 and boss.from_library is not None and boss.from_library.name == "sam"
    eileen = story.cast["eileen"]  # the project's own
    assert eileen.from_library is None and eileen.photos == [path.parent / "cast" / "eileen" / "1.jpg"]
    assert story.shots[0].resolved_prompt(story).startswith(CAST["nora"])
    assert not story.consent_warnings  # every member has a current record


def test_a_local_member_wins_over_the_library(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, library: Path
) -> None:
    path = _project(tmp_path_factory, tmp_path / "p")
    story = load_story(path, cast_library=library)
    assert all(member.from_library is None for member in story.cast.values())


def test_which_library_the_option_the_story_then_the_environment(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _project(tmp_path_factory, tmp_path / "p", from_library=("nora",))
    problems = _problems(path)
    assert [p.line for p in problems] == [9, 15]  # both shots naming {nora}
    assert "unknown cast member 'nora'" in problems[0].message
    assert "--cast-library DIR" in (problems[0].hint or "")  # where members would come from
    monkeypatch.setenv(CAST_LIBRARY_ENV, str(library))
    assert load_story(path).cast["nora"].from_library is not None
    other = make_library(tmp_path_factory, tmp_path / "other")
    (other / "nora" / "1.jpg").rename(other / "nora" / "moved.jpg")  # a broken member: must not be used
    path.write_text(f"cast_library: {other}\n" + path.read_text())
    assert "missing photos" in str(_problems(path)[0])  # the story's cast_library wins over the env
    assert load_story(path, cast_library=library).library.root == library  # and --cast-library wins


def test_problems_point_at_the_story_line(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, library: Path
) -> None:
    path = _project(tmp_path_factory, tmp_path / "p", from_library=("nora",))
    entries = [
        "ann: {library: anna}",
        "bob: {library: sam, photos: [cast/sam/1.jpg]}",
        "cid: {photos: [cast/sam/1.jpg], description: }",
    ]
    text = path.read_text().replace("cast:\n", "cast:\n" + "".join(f"  {entry}\n" for entry in entries))
    path.write_text(text.replace("{eileen} waves", "{eileen} and {noora} wave"))
    problems = _problems(path, cast_library=library)
    found = {(p.line, p.path): (p.message, p.hint or "") for p in problems}
    assert len(found) == len(problems) == 4, problems
    assert "no member 'anna'" in found[(5, "cast.ann.library")][0]
    assert "members: eileen, nora, sam" in found[(5, "cast.ann.library")][1]
    assert "comes from the cast library" in found[(6, "cast.bob.photos")][0]
    assert "missing 'description'" in found[(7, "cast.cid")][0]
    message, hint = found[(15, "shots[1].prompt")]
    assert "unknown cast member 'noora'" in message and "did you mean 'nora'?" in hint
    assert f"in the cast library {library}" in hint


def test_a_missing_library_folder_named_by_the_story(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    path = _project(tmp_path_factory, tmp_path / "p", header="cast_library: ../nowhere")
    (problem,) = _problems(path)
    assert (problem.line, problem.path) == (2, "cast_library")
    assert f"cast library folder not found: {tmp_path / 'nowhere'}" in problem.message
    assert "outside the project" in (problem.hint or "")
    assert load_story(path, cast_library=tmp_path).library.root == tmp_path  # the option overrides it


def test_a_library_entry_without_a_library(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    path = _project(tmp_path_factory, tmp_path / "p")
    path.write_text(path.read_text().replace("cast:\n", "cast:\n  ann: {library: nora}\n"))
    (problem,) = _problems(path)
    assert problem.path == "cast.ann.library" and "but none is named" in problem.message
    assert "$STORYREEL_CAST" in (problem.hint or "")


def _consent(library: Path, name: str, text: str) -> None:
    (library / name / CONSENT_FILE).write_text(text)


def test_a_use_the_consent_does_not_allow_is_refused(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, library: Path
) -> None:
    path = _project(tmp_path_factory, tmp_path / "p", from_library=("nora", "sam"), header="use: [social]")
    load_story(path, cast_library=library)  # the records allow internal and social
    path.write_text(path.read_text().replace("use: [social]", "use: [social, advertising]"))
    problems = _problems(path, cast_library=library)
    assert [(p.line, p.path) for p in problems] == [(9, "shots[0].prompt"), (9, "shots[0].prompt")]
    nora = next(p for p in problems if "'nora'" in p.message)
    assert "'nora' may not appear in a reel for advertising" in nora.message
    assert "allows internal, social" in nora.message and str(library / "nora" / CONSENT_FILE) in nora.message
    assert "ask cast@example.com to extend the consent" in (nora.hint or "")
    assert nora.column == 14  # at {nora} in the prompt


def test_expired_consent_is_a_warning_render_sees(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, library: Path
) -> None:
    _consent(library, "nora", "given_by: Nora\nvalid_until: 2020-01-31\nallowed_uses: [social]\n")
    path = _project(tmp_path_factory, tmp_path / "p", from_library=("nora",))
    story = load_story(path, cast_library=library)
    (warning,) = story.consent_warnings
    assert warning in story.warnings and warning.line == 9
    assert "the consent of 'nora' expired on 2020-01-31" in warning.message
    assert "ask Nora to renew it" in (warning.hint or "")


def test_consent_records_beside_project_photos_count_too(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    path = _project(tmp_path_factory, tmp_path / "p", header="use: print")
    load_story(path)  # no records: project members are not checked
    _consent(path.parent / "cast", "sam", "given_by: Sam\nallowed_uses: social\n")
    (problem,) = _problems(path)
    assert problem.path == "cast.sam" and "may not appear in a reel for print" in problem.message


def test_library_members_without_a_record(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, library: Path
) -> None:
    (library / "nora" / CONSENT_FILE).unlink()
    path = _project(tmp_path_factory, tmp_path / "p", from_library=("nora",))
    (warning,) = load_story(path, cast_library=library).consent_warnings
    assert "'nora' from the cast library has no consent record" in warning.message
    path.write_text(path.read_text().replace("title: Test Reel", "title: Test Reel\nuse: social"))
    (problem,) = _problems(path, cast_library=library)
    assert "use social cannot be checked" in problem.message and "--consent-by" in (problem.hint or "")


def test_a_damaged_record_is_a_problem_naming_both_files(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, library: Path
) -> None:
    _consent(library, "nora", "given_by: Nora\nallowed_uses: [social]\nvalid_until: someday\n")
    path = _project(tmp_path_factory, tmp_path / "p", from_library=("nora",))
    (problem,) = _problems(path, cast_library=library)
    assert problem.line == 9 and f"{library / 'nora' / CONSENT_FILE}:3: valid_until" in problem.message


def test_use_is_one_word_or_a_list_of_words(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    path = _project(tmp_path_factory, tmp_path / "p", header="use: social, print")
    assert load_story(path).use == ["social", "print"]
    path.write_text(path.read_text().replace("use: social, print", "use: [Social Media]"))
    (problem,) = _problems(path)
    assert (problem.line, problem.path) == (2, "use[0]")
    assert (
        problem.message
        == "'Social Media' is not a use: write one lower-case word (internal, social, advertising, …)"
    )
