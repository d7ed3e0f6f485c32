import json

import numpy as np
import pytest
from PIL import Image, ImageOps

from ingredients_model.errors import IngredientsError
from ingredients_model.metrics import benchmark
from ingredients_model.metrics.face_similarity import DlibBackend
from ingredients_model.metrics.fid import TorchFeatureExtractor
from ingredients_model.metrics.tiny import TinyFeatureNet, write_tiny_clip_folder
from ingredients_model.metrics.video import write_video

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

    result = benchmark.evaluate_cases(
        cases,
        {c.name: videos / f"{c.name}.mp4" for c in cases},
        DlibBackend(),
        clip_scorer=ClipScorer(write_tiny_clip_folder(tmp_path / "clip")),
        fid_extractor=TorchFeatureExtractor(TinyFeatureNet(), size=32),
        num_frames=2,
    )
    by_name = {c.name: c for c in result.cases}
    # the same people (mirrored, re-encoded) are recognised: well above dlib's same-person threshold
    assert by_name["solo"].face_sim > 0.6 and by_name["duo"].face_sim > 0.5
    assert all(v is not None and v > 0.5 for v in by_name["duo"].per_ref)
    assert 50 < result.face_sim <= 100
    assert result.clip_score is not None and 0 <= result.clip_score <= 100
    assert result.fid is not None and np.isfinite(result.fid) and result.fid >= 0
    table = benchmark.format_table(result)
    assert "Ingredients (paper, Table 1)" in table and "77.1" in table and "106.3" in table
    assert "this run (dlib, 2 cases)" in table and "offline fallback" in table


@pytest.mark.slow
def test_cli_renders_with_tiny_model_then_reuses_renders(eval_set, tiny_model_dir, tmp_path, capsys):
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
        "--json",
        str(tmp_path / "result.json"),
    ]
    assert benchmark.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["duo.mp4", "solo.mp4"]
    printed = capsys.readouterr().out
    assert "Face Sim (%)" in printed and "this run (dlib, 2 cases)" in printed
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["paper"]["face_sim"] == 77.1 and len(saved["cases"]) == 2
    assert 0 <= saved["face_sim"] <= 100
    stamp = (out / "solo.mp4").stat().st_mtime_ns
    assert benchmark.main(argv) == 0  # resumes: existing renders are evaluated, not re-rendered
    assert (out / "solo.mp4").stat().st_mtime_ns == stamp


def test_cli_errors_are_reported_not_raised(eval_set, tmp_path, capsys):
    data, _ = eval_set
    assert benchmark.main(["--data", str(data)]) == 1
    assert "--model" in capsys.readouterr().err
    assert benchmark.main(["--data", str(data), "--videos", str(tmp_path)]) == 1
    assert "videos missing" in capsys.readouterr().err
