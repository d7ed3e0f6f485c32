import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from rich.console import Console
from typer.testing import CliRunner

from ingredients_model.metrics.video import write_video
from storyreel.cli import app
from storyreel.errors import StoryreelError
from storyreel.evaluate import eval_path, evaluate_story, read_eval, write_eval
from storyreel.project import Project, init_project

FRAMES = 3
pytestmark = pytest.mark.slow  # the example project and dlib on every frame: ~10-20 s for the module


def _frame(people: list[Image.Image]) -> np.ndarray:
    """A 720x480 frame with the given portraits side by side, left to right."""
    canvas = Image.new("RGB", (720, 480), (70, 90, 120))
    step = 720 // max(len(people), 1)
    for i, person in enumerate(people):
        canvas.paste(person.resize((260, 260)), (i * step + (step - 260) // 2, 110))
    return np.asarray(canvas)


def _render(project, shot_id: str, cast: list[str], people: list[Image.Image], prompt: str) -> None:
    """A clip made with ffmpeg plus the runner's renders/<id>.json (job incl. cast, key, engine)."""
    write_video(np.stack([_frame(people)] * FRAMES), project.clip_path(shot_id), fps=8)
    job = {"shot_id": shot_id, "cast": cast, "prompt": prompt, "key": f"key-{shot_id}"}
    project.clip_meta_path(shot_id).write_text(json.dumps({"job": job, "key": job["key"], "engine": "test"}))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The example project: two shots rendered by the preview engine, one handmade, one not rendered."""
    from storyreel.runner import RenderOptions, render_stories

    project = init_project(tmp_path_factory.mktemp("eval") / "launch", example=True)
    options = RenderOptions(engine="preview", only=["breakfast", "suit-up"], reel=False)
    (report,) = render_stories([project.story_path], options, Console(quiet=True))
    assert sorted(report.rendered) == ["breakfast", "suit-up"]
    # countdown: sam missing, nora twice (a failure the preview engine cannot produce)
    nora = Image.open(project.cast_dir / "nora" / "1.jpg").convert("RGB")
    _render(project, "countdown", ["sam", "nora"], [nora, ImageOps.mirror(nora)], "cheer")
    return project


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from ingredients_model.metrics.tiny import write_tiny_clip_folder

    return write_tiny_clip_folder(tmp_path_factory.mktemp("clip") / "clip")


@pytest.fixture(scope="module")
def report(rendered, clip_dir):
    return evaluate_story(rendered.load_story(), rendered, backend="dlib", frames=FRAMES, clip_dir=clip_dir)


def test_report_per_shot_and_character(report):
    assert report["backend"] == "dlib" and report["offline_fallback"] is True
    assert "offline" in report["backend_label"]
    shots = report["shots"]
    assert list(shots) == ["breakfast", "suit-up", "countdown", "orbit"]
    breakfast = shots["breakfast"]
    assert breakfast["status"] == "ok" and breakfast["flags"] == []
    assert breakfast["detections"]["per_frame"] == [2] * FRAMES
    for name in ("nora", "sam"):
        entry = breakfast["characters"][name]
        assert entry["similarity"] > report["threshold"] and entry["frames_seen"] == FRAMES
    assert breakfast["strict"]["face_sim"] == pytest.approx(
        min(breakfast["characters"][n]["similarity"] for n in ("nora", "sam")), abs=0.05
    )
    # both protocols by default; without buffalo_l the released one says why it is missing
    assert list(report["protocols"]) == ["released", "strict"] and breakfast["released"] is None
    assert not report["protocols"]["released"]["computed"]
    assert "buffalo_l" in report["protocols"]["released"]["notes"][0]
    assert breakfast["engine"] == "preview" and len(breakfast["key"]) == 64
    assert shots["suit-up"]["characters"]["eileen"]["similarity"] > 0.5
    assert shots["orbit"]["status"] == "not_rendered"


def test_flags_missing_and_duplicated(report):
    countdown = report["shots"]["countdown"]
    assert countdown["cast"] == ["sam", "nora"]
    sam, nora = countdown["characters"]["sam"], countdown["characters"]["nora"]
    # greedy matching gives one nora face to sam; it is too unlike sam's photos
    assert "low_similarity" in sam["flags"]
    assert "duplicated" in nora["flags"] and nora["duplicate_frames"] == FRAMES
    assert "duplicated:nora" in countdown["flags"] and "low_similarity:sam" in countdown["flags"]
    assert countdown["flags"][0] == "stale"  # its prompt is not the story's prompt for the shot


def test_cross_shot_consistency(report):
    nora = report["characters"]["nora"]
    assert nora["shots"] == ["breakfast", "countdown"]
    (pair,) = nora["consistency"]
    assert (pair["a"], pair["b"]) == ("breakfast", "countdown")
    assert pair["similarity"] > report["threshold"] and not pair["drift"]
    sam = report["characters"]["sam"]
    # sam's "appearance" in countdown is nora: drift between his two shots
    assert sam["consistency"][0]["drift"] is True
    assert "drift:breakfast/countdown" in sam["flags"]
    assert report["characters"]["eileen"]["consistency"] == []
    assert report["flag_count"] >= 3


def test_write_and_read_eval(rendered, report):
    path = write_eval(rendered, report)
    assert path == rendered.renders_dir / "eval.json" == eval_path(rendered)
    assert read_eval(rendered) == json.loads(json.dumps(report))
    assert not list(rendered.renders_dir.glob("*.partial"))


def test_cli_eval_prints_tables_and_writes_json(rendered):
    eval_path(rendered).unlink(missing_ok=True)
    result = CliRunner().invoke(
        app,
        ["eval", str(rendered.story_path), "--backend", "dlib", "--frames", "2"],
        env={"STORYREEL_CLIP": None, "STORYREEL_MODEL": None},
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "offline backend" in out and "dlib" in out
    for title in ("Shots", "Characters per shot", "Cross-shot consistency"):
        assert title in out
    assert "not rendered" in out and "duplicated:nora" in out
    saved = read_eval(rendered)
    assert saved is not None and saved["frames_per_shot"] == 2
    assert saved["shots"]["breakfast"]["strict"]["clip_score"] is None  # no CLIP folder given
    page = rendered.review_path.read_text(encoding="utf-8")  # the review page shows the evaluation
    assert "resemblance (" in page and "seen twice in" in page  # in words, not raw keys
    assert "strict: face similarity" in page and "released: not computed" in page  # both protocols
    shots = out.split("Characters per shot")[0]
    assert "strict" in shots and "FID" not in shots and "not computed" in out  # no buffalo_l here


def test_cli_eval_of_several_stories_as_json(rendered, tmp_path):
    empty = tmp_path / "empty"
    shutil.copytree(rendered.root, empty, ignore=shutil.ignore_patterns("renders", ".storyreel"))
    result = CliRunner().invoke(
        app,
        ["eval", str(rendered.story_path), str(empty), "--backend", "dlib", "--frames", "1", "--json"],
        env={"STORYREEL_CLIP": None, "STORYREEL_MODEL": None},
    )
    assert result.exit_code == 1  # one story could not be evaluated: the other still was
    document = json.loads(result.stdout)
    assert document["schema"] == "storyreel.eval/1" and document["ok"] is False
    ok, failed = document["stories"]
    assert ok["status"] == "ok" and ok["report"]["frames_per_shot"] == 1 and ok["error"] is None
    assert Path(ok["eval_json"]) == eval_path(rendered)
    assert failed["status"] == "failed" and "no rendered shots" in failed["error"]["message"]
    assert "Shots" in result.stderr and "empty: no rendered shots" in result.stderr  # human text: stderr


def test_arcface_without_weights_is_a_user_error(rendered, tmp_path):
    from ingredients_model.errors import IngredientsError

    with pytest.raises(IngredientsError, match="glintr100"):
        evaluate_story(rendered.load_story(), rendered, backend="arcface", model_dir=tmp_path)


def test_clip_score_with_tiny_clip(report, clip_dir):
    scores = [shot["strict"]["clip_score"] for shot in report["shots"].values() if shot["status"] == "ok"]
    assert len(scores) == 3 and all(0 <= score <= 100 for score in scores)
    assert report["clip_model"] == str(clip_dir)


def test_cast_photo_without_face_is_reported(rendered, tmp_path):
    shutil.copytree(rendered.root, tmp_path / "p")
    project = Project.find(tmp_path / "p")
    Image.new("RGB", (512, 512), (200, 200, 200)).save(project.cast_dir / "eileen" / "1.jpg")
    (project.cast_dir / "eileen" / "faces.json").unlink(missing_ok=True)
    _render(project, "suit-up", ["eileen"], [Image.new("RGB", (64, 64))], "x")
    with pytest.raises(StoryreelError):
        evaluate_story(project.load_story(), project, backend="dlib", frames=1)


def test_stale_and_unrendered_projects(rendered, tmp_path):
    shutil.copytree(rendered.root, tmp_path / "p")
    project = Project.find(tmp_path / "p")
    project.clip_path("breakfast").unlink()
    project.clip_path("countdown").unlink()
    meta = json.loads(project.clip_meta_path("suit-up").read_text())
    meta["job"]["cast"] = ["zed"]  # rendered for a cast member the story no longer has
    project.clip_meta_path("suit-up").write_text(json.dumps(meta))
    report = evaluate_story(project.load_story(), project, backend="dlib", frames=1)
    assert report["shots"]["suit-up"]["status"] == "stale"
    assert report["characters"] == {} and report["flag_count"] == 0
    project.clip_path("suit-up").unlink()
    with pytest.raises(StoryreelError, match="no rendered shots") as err:
        evaluate_story(project.load_story(), project, backend="dlib")
    assert "storyreel render" in err.value.hint


def _shot_result(engine: str, face_sim: float, people: dict[str, float], **extra) -> dict:
    return {
        "status": "ok", "engine": engine, "key": f"{engine}-key",
        "strict": {"face_sim": face_sim, "clip_score": None},
        "characters": {name: {"similarity": value} for name, value in people.items()}, "flags": [], **extra,
    }  # fmt: skip


def test_engines_are_compared_across_evaluations(tmp_path_factory, tmp_path) -> None:
    from storyreel.cli.eval_commands import engine_tables
    from storyreel.evaluate import compare_engines
    from storyreel.story import load_story
    from tests.helpers.projects import make_project

    path = make_project(tmp_path_factory, tmp_path / "p", shots=2)
    story = load_story(path)
    first = {
        "s1": _shot_result("ingredients", 0.7, {"nora": 0.8, "sam": 0.6}),
        "s2": {"status": "not_rendered"},
    }
    engines = compare_engines(story, first, "dlib", None)
    assert list(engines) == ["ingredients"] and engine_tables({"engines": engines}) == []
    # the story rendered again with wan-vace: the ingredients numbers stay beside the new ones
    second = {
        "s1": _shot_result("wan-vace", 0.75, {"nora": 0.9, "sam": 0.5}),
        "s2": _shot_result("wan-vace", 0.6, {"eileen": 0.6}),
    }
    engines = compare_engines(story, second, "dlib", {"backend": "dlib", "engines": engines})
    assert sorted(engines) == ["ingredients", "wan-vace"]
    assert engines["ingredients"]["shots"]["s1"]["face_sim"] == 0.7
    assert engines["wan-vace"]["characters"]["nora"] == {"mean_similarity": 0.9, "shots": ["s1"]}
    assert engines["wan-vace"]["characters"]["eileen"]["shots"] == ["s2"]
    shots, people = engine_tables({"engines": engines})
    assert [c.header for c in shots.columns][1:3] == ["ingredients face sim", "ingredients CLIP"]
    assert people.row_count == 3  # nora, sam, eileen
    # another face backend's numbers are not comparable; a changed shot drops its old numbers
    assert list(compare_engines(story, {}, "arcface", {"backend": "dlib", "engines": engines})) == []
    path.write_text(path.read_text().replace("sit at a kitchen table", "sit on a bench"))
    changed = compare_engines(load_story(path), {}, "dlib", {"backend": "dlib", "engines": engines})
    assert "ingredients" not in changed and list(changed["wan-vace"]["shots"]) == ["s2"]
    stale = {"s2": _shot_result("preview", 0.1, {"eileen": 0.1}, flags=["stale"])}
    assert "preview" not in compare_engines(story, stale, "dlib", None)


def test_both_protocols_with_a_stand_in_buffalo_l(rendered, clip_dir, tmp_path, monkeypatch):
    """The released protocol end to end: insightface's FaceAnalysis from a buffalo_l folder (tiny random
    ArcFace; detection by dlib in insightface's interface), 24 frames, BGR CLIPScore; eval.json, the table
    and the review page carry both protocols, labelled."""
    from ingredients_model.metrics import released
    from tests.helpers.face_models import DlibKeypointDetector, write_buffalo_l

    folder = write_buffalo_l(tmp_path / "buffalo_l")
    load = released.load_face_analysis

    def with_dlib_detector(path, device="cpu", det_size=released.DET_SIZE):
        app = load(path, device=device, det_size=det_size)
        app.models["detection"] = app.det_model = DlibKeypointDetector()
        return app

    monkeypatch.setattr(released, "load_face_analysis", with_dlib_detector)
    report = evaluate_story(
        rendered.load_story(), rendered, backend="dlib", frames=FRAMES, clip_dir=clip_dir, face_models=folder
    )
    assert report["protocols"]["released"]["computed"] and report["protocols"]["released"]["frames"] == 24
    assert any("FID not computed" in note for note in report["protocols"]["released"]["notes"])
    breakfast = report["shots"]["breakfast"]["released"]
    assert breakfast["frames"] == 24 and breakfast["frames_without_faces"] == 0
    assert breakfast["face_sim"] > 0.8  # the preview draws the cast photos themselves
    assert breakfast["clip_score"] is not None and breakfast["fid"] is None
    write_eval(rendered, report)
    from storyreel.outputs import refresh_review

    page = refresh_review(rendered.load_story(), rendered).read_text(encoding="utf-8")
    assert "released: face similarity" in page and "strict: face similarity" in page
    story, flags = str(rendered.story_path), ["--backend", "dlib", "--frames", "1", "--protocol", "released"]
    command = ["eval", story, *flags, "--face-models", str(folder)]
    result = CliRunner().invoke(app, command, env={"STORYREEL_CLIP": None, "STORYREEL_MODEL": None})
    assert result.exit_code == 0, result.output
    shots = result.output.split("Characters per shot")[0]
    assert "released" in shots and "FID" in shots and "strict" not in shots, result.output
    only = read_eval(rendered)
    assert list(only["protocols"]) == ["released"] and "strict" not in only["shots"]["breakfast"]
    # asked for by name, a missing buffalo_l is an error, not a silent gap
    with pytest.raises(StoryreelError, match="buffalo_l"):
        evaluate_story(rendered.load_story(), rendered, backend="dlib", frames=1, protocol="released")
