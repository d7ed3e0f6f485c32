import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from ingredients_model.errors import IngredientsError
from ingredients_model.metrics import benchmark
from ingredients_model.metrics.face_similarity import ArcFaceBackend, DlibBackend
from ingredients_model.metrics.fid import TorchFeatureExtractor
from ingredients_model.metrics.tiny import TinyFeatureNet, write_tiny_clip_folder
from ingredients_model.metrics.video import write_video
from tests.helpers.face_models import SquareFaceDetector, frame

GROUP_BOX = (0, 100, 640, 520)  # three people of insightface's t1.jpg


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory, t1_jpg, astronaut_png):
    """Two cases in the documented layout, and 'generated' videos made from the same people, mirrored."""
    root = tmp_path_factory.mktemp("evalset")
    data, videos = root / "data", root / "videos"
    group = Image.open(t1_jpg).convert("RGB")
    astronaut = Image.open(astronaut_png).convert("RGB")
    solo, duo = data / "solo", data / "duo"
    solo.mkdir(parents=True)
    duo.mkdir(parents=True)
    astronaut.save(solo / "ref_1.png")
    (solo / "prompt.txt").write_text("an astronaut in a white suit smiling at the camera\n")
    group.crop((15, 234, 220, 439)).save(duo / "ref_1.jpg")
    group.crop((400, 250, 630, 475)).save(duo / "ref_2.jpg")
    (duo / "prompt.txt").write_text("two people talk on a street at night")
    (data / "_renders").mkdir()  # ignored: starts with "_"
    frames_solo = [np.asarray(ImageOps.mirror(astronaut.resize((256, 256))))] * 3
    frames_duo = [np.asarray(ImageOps.mirror(group.crop(GROUP_BOX)))] * 3
    write_video(np.stack(frames_solo), videos / "solo.mp4")
    write_video(np.stack(frames_duo), videos / "duo.mp4")
    return data, videos


def test_load_cases_layout(eval_set, tmp_path):
    data, _ = eval_set
    cases = benchmark.load_cases(data)
    assert [c.name for c in cases] == ["duo", "solo"]
    assert [p.name for p in cases[0].refs] == ["ref_1.jpg", "ref_2.jpg"]
    assert cases[1].prompt.startswith("an astronaut")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "ref_1.jpg").write_bytes(b"")
    with pytest.raises(IngredientsError, match=r"broken: missing or empty prompt\.txt"):
        benchmark.load_cases(tmp_path)
    with pytest.raises(IngredientsError, match="not found"):
        benchmark.load_cases(tmp_path / "nope")


@pytest.mark.slow
def test_evaluate_existing_videos_with_all_metrics(eval_set, tmp_path):
    data, videos = eval_set
    cases = benchmark.load_cases(data)
    from ingredients_model.metrics.clip_score import ClipScorer

    row = benchmark.evaluate_strict(
        cases,
        {c.name: videos / f"{c.name}.mp4" for c in cases},
        DlibBackend(),
        clip_scorer=ClipScorer(write_tiny_clip_folder(tmp_path / "clip")),
        fid_extractor=TorchFeatureExtractor(TinyFeatureNet(), size=32),
        num_frames=2,
    )
    by_name = {c.name: c for c in row.cases}
    # the same people (mirrored, re-encoded) are recognised: well above dlib's same-person threshold
    assert by_name["solo"].face_sim > 0.6 and by_name["duo"].face_sim > 0.5
    assert all(v is not None and v > 0.5 for v in by_name["duo"].per_ref)
    assert 50 < row.face_sim <= 100
    assert row.clip_score is not None and 0 <= row.clip_score <= 100
    assert row.fid is not None and np.isfinite(row.fid) and row.fid >= 0
    table = benchmark.format_table(benchmark.BenchmarkResult({"strict": row}))
    assert "Ingredients (paper, Table 1)" in table and "77.1" in table and "106.3" in table
    assert "this run, strict (2 cases)" in table and "offline fallback" in table


@pytest.mark.slow
def test_cli_renders_with_tiny_model_then_reuses_renders(
    eval_set, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "no-insightface"))
    data, _ = eval_set
    out = tmp_path / "renders"
    argv = [
        "--data",
        str(data),
        "--model",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--steps",
        "2",
        "--frames",
        "2",
        "--backend",
        "dlib",
        "--protocol",
        "both",
        "--json",
        str(tmp_path / "result.json"),
    ]
    assert benchmark.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["duo.mp4", "solo.mp4"]
    printed = capsys.readouterr().out
    assert "Face Sim (%)" in printed and "this run, strict (2 cases)" in printed
    # no buffalo_l here: with `both`, the released row says why it is missing instead of stopping the run
    assert "this run, released (0 cases)" in printed and "not computed: insightface buffalo_l" in printed
    saved = json.loads((tmp_path / "result.json").read_text())
    strict = saved["protocols"]["strict"]
    assert saved["paper"]["face_sim"] == 77.1 and len(strict["cases"]) == 2
    assert 0 <= strict["face_sim"] <= 100 and saved["protocols"]["released"]["face_sim"] is None
    stamp = (out / "solo.mp4").stat().st_mtime_ns
    assert benchmark.main(argv) == 0  # resumes: existing renders are evaluated, not re-rendered
    assert (out / "solo.mp4").stat().st_mtime_ns == stamp


def test_cli_errors_are_reported_not_raised(eval_set, tmp_path, capsys):
    data, _ = eval_set
    assert benchmark.main(["--data", str(data)]) == 1
    assert "--model" in capsys.readouterr().err
    assert benchmark.main(["--data", str(data), "--videos", str(tmp_path)]) == 1
    assert "videos missing" in capsys.readouterr().err


def _square_eval_set(root, cases: dict[str, tuple[list[int], list[list[tuple[int, int, int, int]]]]]):
    """Cases of crafted square faces: references (identities) and video frames (identity, x, y, size)."""
    data, videos = root / "data", root / "videos"
    for name, (refs, frames) in cases.items():
        (data / name).mkdir(parents=True)
        for k, identity in enumerate(refs, start=1):
            Image.fromarray(frame([(identity, 100, 60, 80)])).save(data / name / f"ref_{k}.png")
        (data / name / "prompt.txt").write_text("two people talk")
        write_video(np.stack([frame(f) for f in frames] * 3), videos / f"{name}.mp4")
    return data, videos


def test_released_and_strict_rows_on_crafted_cases(square_app, tmp_path, capsys):
    data, videos = _square_eval_set(
        tmp_path,
        {
            "duo": ([0, 1], [[(0, 20, 40, 80), (1, 200, 40, 80)]]),
            "stranger": ([0, 1], [[(0, 20, 40, 80), (2, 200, 40, 80)]]),
        },
    )
    cases = benchmark.load_cases(data)
    paths = {c.name: videos / f"{c.name}.mp4" for c in cases}
    strict_backend = ArcFaceBackend.from_models(SquareFaceDetector(), square_app.models["recognition"])
    result = benchmark.BenchmarkResult(
        {
            "released": benchmark.evaluate_released(cases, paths, square_app),
            "strict": benchmark.evaluate_strict(cases, paths, strict_backend, num_frames=4),
        }
    )
    released_cases = {c.name: c.face_sim for c in result.protocols["released"].cases}
    strict_cases = {c.name: c.face_sim for c in result.protocols["strict"].cases}
    assert released_cases["duo"] > 0.85 and released_cases["stranger"] > 0.85  # best pair: A is there
    assert strict_cases["duo"] > 0.85 and strict_cases["stranger"] < 0.3  # B is not
    assert all(c.frames == 24 for c in result.protocols["released"].cases)
    table = benchmark.format_table(result)
    lines = table.splitlines()
    assert lines[2].startswith("Ingredients (paper, Table 1)") and lines[3].startswith("this run, released")
    assert "FID not computed: needs torchvision" in table
    print("\n" + table)


def test_cli_released_protocol_with_buffalo_l_folder(buffalo_l_dir, tmp_path, capsys, monkeypatch):
    """The whole CLI path on the tiny buffalo_l (its stand-in detector fires on bright 32-pixel cells)."""
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "no-insightface"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    data, videos = tmp_path / "data", tmp_path / "videos"
    (data / "one").mkdir(parents=True)
    bright = np.zeros((320, 320, 3), np.uint8)
    bright[64:192, 64:192] = 230
    Image.fromarray(bright).save(data / "one" / "ref_1.png")
    (data / "one" / "prompt.txt").write_text("a person")
    write_video(np.stack([bright] * 10), videos / "one.mp4")
    argv = ["--data", str(data), "--videos", str(videos), "--protocol", "released"]
    assert benchmark.main([*argv, "--face-models", str(buffalo_l_dir)]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("this run, released"))
    assert row.split("|")[1].strip() == "100.0"
    assert "FID not computed" in printed and "inception_v3_google-0cc3c7bd.pth" in printed
    # asked for by name, a missing face model stops the run with a clear message
    assert benchmark.main(argv) == 1
    err = capsys.readouterr().err
    assert "det_10g.onnx, w600k_r50.onnx" in err and "buffalo_l" in err
