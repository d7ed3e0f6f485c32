"""`storyreel cast add|list|show|remove` end to end through the real CLI entry point."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from ingredients_model.faces import write_tiny_face_encoder
from storyreel.cli import main
from storyreel.cli.app import console, console_err

STORY = "title: t\nshots: [{id: a, prompt: hi}]\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "story.yaml").write_text(STORY)
    return tmp_path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tmp_path_factory.mktemp("model")
    write_tiny_face_encoder(model / "face_encoder", id_dim=32, vit_dim=16, vit_tokens=9, num_scales=5)
    return model


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "width", 400)
    monkeypatch.setattr(console_err, "width", 400)


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


@pytest.mark.slow
def test_add_list_show_remove(
    project: Path,
    model_dir: Path,
    t1_jpg: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = run(capsys, "cast", "add", t1_jpg, "--name", "ana", "--face", "2", "--project", project)
    assert code == 0, err
    assert "added cast/ana/t1.jpg: face 2 of 6" in err  # notices: stderr; the snippet (result): stdout
    snippet = ["cast:", "  ana:", "    photos: [cast/ana/t1.jpg]"]
    snippet += ['    description: "a person (describe ana here)"', "    face: 2"]
    assert out == "\n".join(snippet) + "\n"

    assert (project / "cast" / "ana" / "t1.jpg").is_file()
    assert (project / "story.yaml").read_text() == STORY

    code, _, err = run(capsys, "cast", "add", t1_jpg, "-n", "ana", "-f", "2", "-p", project)
    assert code == 0 and "already there: cast/ana/t1.jpg (face 2), nothing to do" in err

    code, out, _ = run(capsys, "cast", "list", "-p", project)
    assert code == 0 and "ana" in out and "73 px" in out and "│ no " in out

    # encoding with a model folder: first an encoding, then a cache hit
    timings = []
    for expected in ("encoded", "cache hit"):
        start = time.perf_counter()
        code, _, err = run(
            capsys, "cast", "add", t1_jpg, "-n", "ana", "-f", "2", "-p", project, "--model", model_dir
        )
        timings.append(time.perf_counter() - start)
        assert code == 0 and f"identity of t1.jpg: {expected}" in err
    print(f"cast add with tiny encoder: {timings[0]:.2f}s, repeated (cache hit): {timings[1]:.2f}s")
    code, out, _ = run(capsys, "cast", "list", "-p", project)
    assert "│ yes " in out

    code, out, _ = run(capsys, "cast", "show", "ana", "-p", project)
    sheet = project / ".storyreel" / "sheets" / "ana.png"
    assert code == 0 and out.strip() == str(sheet) and sheet.is_file()

    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, _, _ = run(capsys, "cast", "remove", "ana", "-p", project)
    assert code == 1 and (project / "cast" / "ana").is_dir()
    code, out, _ = run(capsys, "cast", "remove", "ana", "-p", project, "--yes")
    assert code == 0 and "removed" in out and not (project / "cast" / "ana").exists()
    code, _, err = run(capsys, "cast", "remove", "ana", "-p", project, "--yes")
    assert code == 1 and "no cast member ana" in err


def test_add_errors(project: Path, t1_jpg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image
    from skimage import data

    code, _, err = run(capsys, "cast", "add", t1_jpg, "--name", "ana", "--face", "7", "--project", project)
    assert code == 1 and "face 7 was asked for" in err and "6: box left=" in err and "t1-faces.png" in err
    assert "hint:" in err and "--face" in err and "Traceback" not in err
    code, _, err = run(capsys, "cast", "add", t1_jpg, "--name", "ana", "--project", project)
    assert code == 0 and "shows 6 faces and none is chosen: face 1 (from the left)" in err  # as released
    assert "t1-faces.png" in err and "--face K" in err

    landscape = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(landscape)
    code, _, err = run(capsys, "cast", "add", landscape, "--name", "ana", "--project", project)
    assert code == 1 and f"no face found in {landscape}" in err and "frontal" in err

    code, _, err = run(capsys, "cast", "add", t1_jpg, "--name", "Ana!", "--face", "1", "--project", project)
    assert code == 1 and "invalid cast name" in err

    code, _, err = run(capsys, "cast", "list", "--project", tmp_path / "nowhere")
    assert code == 1 and "does not exist" in err


def test_lookalike_warning_is_printed(
    project: Path, t1_jpg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "again.jpg"
    copy.write_bytes(t1_jpg.read_bytes())
    run(capsys, "cast", "add", t1_jpg, "--name", "ana", "--face", "4", "--project", project)
    code, _, err = run(capsys, "cast", "add", copy, "--name", "chandler", "--face", "4", "--project", project)
    assert code == 0 and "warning: chandler looks like existing cast member ana" in err


@pytest.mark.slow
def test_story_model_is_used_for_encoding(
    tmp_path: Path, t1_jpg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tiny_face_encoder(
        tmp_path / "model" / "face_encoder", id_dim=8, vit_dim=4, vit_tokens=3, num_scales=2
    )
    (tmp_path / "story.yaml").write_text("title: t\ndefaults: {model: model}\nshots: [{id: a, prompt: hi}]\n")
    code, _, err = run(capsys, "cast", "add", t1_jpg, "-n", "ana", "-f", "3", "-p", tmp_path)
    assert code == 0 and "identity of t1.jpg: encoded" in err
    (tmp_path / "incomplete" / "face_encoder").mkdir(parents=True)
    (tmp_path / "story.yaml").write_text(
        "title: t\ndefaults: {model: incomplete}\nshots: [{id: a, prompt: hi}]\n"
    )
    code, _, err = run(capsys, "cast", "add", t1_jpg, "-n", "bob", "-f", "4", "-p", tmp_path)
    assert code == 0 and "added cast/bob/t1.jpg" in err
    assert "identity not encoded now" in err and "glintr100.onnx" in err
    assert f"storyreel models download {tmp_path / 'incomplete'}" in err


def test_json_documents_of_add_list_and_show(
    project: Path, model_dir: Path, t1_jpg: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setattr(console_err, "_force_terminal", True)  # the progress bar shows on a terminal
    argv = ["cast", "add", t1_jpg, "-n", "ana", "-f", "2", "-p", project, "--model", model_dir, "--json"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    added = json.loads(out)  # stdout is exactly one JSON document
    assert added["schema"] == "storyreel.cast.add/1" and added["name"] == "ana"
    assert added["snippet"] == {
        "cast": {
            "ana": {"photos": ["cast/ana/t1.jpg"], "description": "a person (describe ana here)", "face": 2}
        }
    }
    assert [(p["photo"], p["face"], p["faces_found"]) for p in added["added"]] == [("t1.jpg", 2, 6)]
    assert [i["state"] for i in added["identities"]] == ["encoded"]
    assert "identities of ana" in err and "added cast/ana/t1.jpg" in err  # progress and notices: stderr

    code, out, _ = run(capsys, "cast", "list", "-p", project, "--json")
    listed = json.loads(out)
    assert listed["schema"] == "storyreel.cast.list/1"
    assert listed["cast"] == [{"name": "ana", "photos": 1, "face_size": 73, "cached_identities": 1,
                               "in_story": False, "description": "a person (describe ana here)",
                               "consent": None}]  # fmt: skip

    code, out, _ = run(capsys, "cast", "show", "ana", "-p", project, "--json")
    shown = json.loads(out)
    assert shown["schema"] == "storyreel.cast.show/1" and Path(shown["sheet"]).is_file()
    assert shown["photos"][0]["photo"] == "t1.jpg"

    code, out, err = run(capsys, "cast", "show", "nobody", "-p", project, "--json")
    error = json.loads(out)  # a failed command still prints one document
    assert code == 1 and error["schema"] == "storyreel.error/1" and error["command"] == "cast.show"
    assert "no cast member nobody" in error["error"]["message"] and "no cast member" in err


def test_library_add_list_show_remove(
    project: Path,
    tmp_path: Path,
    t1_jpg: Path,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    library = tmp_path / "shared-cast"
    monkeypatch.setenv("STORYREEL_CAST", str(library))
    add = ["cast", "add", t1_jpg, "--name", "ana", "--face", "2", "--library", "-p", project]
    code, _, err = run(capsys, *add, "--description", "a woman")
    assert code == 1 and "ana needs a consent record to join the cast library" in err
    assert "--consent-by" in err
    code, _, err = run(capsys, *add, "--consent-by", "Ana", "--allowed-use", "social")
    assert code == 1 and "needs a description" in err and not library.exists()
    consent = ["--consent-by", "Ana Lee", "--allowed-use", "internal,social", "--valid-until", "2020-05-31"]
    code, out, err = run(capsys, *add, "-d", "a woman with curly hair", *consent, "--contact", "ana@x.org")
    assert code == 0, err
    assert f"added {library}/ana/t1.jpg: face 2 of 6" in err  # notices: stderr
    assert "consent: given by Ana Lee, until 2020-05-31, for internal, social" in err
    assert (
        out == "cast:\n  ana: {library: ana}   # or just write {ana} in a shot\n"
    )  # $STORYREEL_CAST names it
    assert (library / "ana" / "consent.yaml").is_file() and not (project / "cast").exists()

    code, out, err = run(capsys, *add, "--valid-until", "2030-12-31", "--model", model_dir, "--json")
    added = json.loads(out)  # renewed and encoded
    assert code == 0 and "consent: given by Ana Lee, until 2030-12-31" in err
    assert added["library"] == str(library) and added["snippet"] == {"cast": {"ana": {"library": "ana"}}}
    assert added["consent"] == {
        "given_by": "Ana Lee", "valid_until": "2030-12-31", "allowed_uses": ["internal", "social"],
        "contact": "ana@x.org", "notes": None, "expired": False,
    }  # fmt: skip
    assert [i["state"] for i in added["identities"]] == ["encoded"]
    assert len(list((library / ".storyreel" / "cache" / "identities").glob("*/*.json"))) == 1

    code, out, err = run(capsys, "cast", "list", "--library", "-p", project)
    assert code == 0 and f"cast library {library} (from $STORYREEL_CAST)" in err
    assert "│ ana " in out and "│ yes " in out and "until 2030-12-31; internal, social" in out
    code, out, _ = run(capsys, "cast", "list", "--library", "-p", project, "--json")
    listed = json.loads(out)
    assert listed["library"] == str(library) and listed["cast"][0]["cached_identities"] == 1
    assert listed["cast"][0]["consent"]["valid_until"] == "2030-12-31"
    code, out, err = run(capsys, "cast", "list", "-p", project)  # the project's own cast is still empty
    assert code == 0 and "no cast yet" in err

    code, out, _ = run(capsys, "cast", "show", "ana", "--cast-library", library, "-p", project)
    assert code == 0 and out.splitlines()[0] == str(library / ".storyreel" / "sheets" / "ana.png")
    assert "  given by:     Ana Lee\n  valid until:  2030-12-31\n  allowed uses: internal, social" in out
    assert "  contact:      ana@x.org" in out
    code, out, _ = run(capsys, "cast", "show", "ana", "--cast-library", library, "-p", project, "--json")
    shown = json.loads(out)
    assert shown["library"] == str(library) and shown["consent"]["given_by"] == "Ana Lee"

    monkeypatch.delenv("STORYREEL_CAST")
    code, _, err = run(capsys, "cast", "list", "--library", "-p", project)
    assert code == 1 and "no cast library is named" in err and "--cast-library DIR" in err
    (project / "story.yaml").write_text(f"cast_library: {library}\n" + STORY)  # the story names it
    code, _, err = run(capsys, "cast", "list", "--library", "-p", project)
    assert code == 0 and "(from cast_library in story.yaml)" in err
    code, out, _ = run(capsys, "cast", "remove", "ana", "--library", "-p", project, "--yes")
    assert code == 0 and f"removed {library / 'ana'}" in out and not (library / "ana").exists()


def _row(out: str, name: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith(f"│ {name} "))
    return [cell.strip() for cell in line.strip("│").split("│")]


@pytest.mark.slow
def test_cached_identity_follows_the_chosen_face(
    project: Path, model_dir: Path, t1_jpg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same group photo for two people, each with their own face: only the encoded face is cached."""
    code, _, err = run(
        capsys, "cast", "add", t1_jpg, "-n", "ana", "-f", "2", "-p", project, "--model", model_dir
    )
    assert code == 0, err
    code, _, err = run(capsys, "cast", "add", t1_jpg, "-n", "bea", "-f", "5", "-p", project)
    assert code == 0, err
    code, out, _ = run(capsys, "cast", "list", "-p", project)
    assert _row(out, "ana")[3] == "yes" and _row(out, "bea")[3] == "no"
    # story.yaml decides for the people it lists: here cara uses ana's photo, but its fifth face
    (project / "story.yaml").write_text(
        "title: t\ncast:\n  cara: {photos: [cast/ana/t1.jpg], description: a woman, face: 5}\n"
        "  ana: {photos: [cast/ana/t1.jpg], description: a woman}\nshots: [{id: a, prompt: '{cara} {ana}'}]\n"
    )
    code, out, _ = run(capsys, "cast", "list", "-p", project)
    # columns: name, photos, face size, cached identity, consent, in story.yaml, description
    assert code == 0 and _row(out, "cara")[1:6] == ["1", "-", "no", "-", "yes"]
    assert _row(out, "ana")[3:6] == ["yes", "-", "yes"] and _row(out, "bea")[3:6] == ["no", "-", "no"]


@pytest.mark.slow
def test_the_example_project_has_its_cast_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "init", tmp_path / "demo", "--example")
    assert code == 0, err
    code, out, _ = run(capsys, "cast", "list", "-p", tmp_path / "demo")
    assert code == 0 and "no cast yet" not in out
    for name in ("nora", "sam", "eileen"):
        assert _row(out, name)[1:6] == ["1", "216 px", "no", "-", "yes"]  # no consent record: -
        assert sorted(p.name for p in (tmp_path / "demo" / "cast" / name).iterdir()) == [
            "1.jpg",
            "crops",
            "faces.json",
        ]  # the photo recorded where it is, not copied
    code, out, _ = run(capsys, "cast", "show", "nora", "-p", tmp_path / "demo")
    assert code == 0 and out.strip().endswith("nora.png")
