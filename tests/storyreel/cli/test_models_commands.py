"""`storyreel models tiny|download` and `storyreel doctor`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingredients_model.checkpoint import missing_files
from storyreel.doctor import FAIL, OK, check_model, run_checks
from tests.helpers.projects import storyreel


@pytest.mark.slow
def test_models_tiny_writes_a_complete_folder(tmp_path: Path) -> None:
    result = storyreel("models", "tiny", str(tmp_path / "tiny"))
    assert result.returncode == 0, result.stderr
    assert missing_files(tmp_path / "tiny") == [] and "revision" in result.stdout
    assert "--engine ingredients --model" in result.stderr  # the next step: a notice


@pytest.mark.slow
def test_download_without_network_says_what_to_do(tmp_path: Path) -> None:
    result = storyreel("models", "download", str(tmp_path / "m"), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "hint" in result.stderr


@pytest.mark.slow
def test_doctor_reports_a_complete_model(tiny_model_dir: Path) -> None:
    result = storyreel("doctor", "--model", str(tiny_model_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("ffmpeg", "torch", "accelerate", "model folder", "face encoder", "[gpu] extra"):
        assert name in result.stdout
    assert "ready" in result.stdout


@pytest.mark.slow
def test_doctor_names_missing_files_and_the_fix(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    for path in (broken / "face_encoder").glob("*.safetensors"):
        path.unlink()
    checks = {c.name: c for c in check_model(broken, "--model")}
    model = checks["model folder"]
    assert model.status == FAIL and "vae/diffusion_pytorch_model" in model.detail
    assert checks["face encoder"].status == FAIL and "face_encoder/" in checks["face encoder"].detail
    assert checks["model folder"].fix.startswith(f"storyreel models download {broken}")
    result = storyreel("doctor", "--model", str(broken))
    assert result.returncode == 1 and "2 problem(s)" in result.stdout


def test_doctor_without_a_model_still_works_for_previews(monkeypatch) -> None:
    monkeypatch.delenv("STORYREEL_MODEL", raising=False)
    checks = {c.name: c for c in run_checks(None)}
    assert checks["ffmpeg"].status == OK and checks["model folder"].status != FAIL
    assert "storyreel models download" in checks["model folder"].fix


@pytest.mark.slow
def test_models_tiny_wan_vace_then_doctor(tmp_path: Path) -> None:
    from storyreel.models.wan_vace import missing_files as missing_wan_files

    result = storyreel("models", "tiny", str(tmp_path / "wan"), "--engine", "wan-vace")
    assert result.returncode == 0, result.stderr
    assert missing_wan_files(tmp_path / "wan") == [] and "--engine wan-vace --wan-model" in result.stderr
    doctor = storyreel("doctor", "--wan-model", str(tmp_path / "wan"))
    assert "wan-vace model" in doctor.stdout and "complete (tiny)" in doctor.stdout
    assert "ftfy" in doctor.stdout


def test_doctor_names_what_a_wan_folder_lacks(tiny_wan_dir: Path, tmp_path: Path) -> None:
    from storyreel.doctor import WARN, check_wan_model
    from storyreel.models.wan_vace import FOLDER_RECORD

    assert check_wan_model(None).status == WARN
    good = check_wan_model(tiny_wan_dir, "--wan-model")
    assert good.status == OK and "112x64 or 64x112, 17 frames at 16 fps" in good.detail
    broken = Path(shutil.copytree(tiny_wan_dir, tmp_path / "wan"))
    (broken / "text_encoder" / "model.safetensors").unlink()
    check = check_wan_model(broken, "--wan-model")
    assert check.status == FAIL and "text_encoder/model.safetensors" in check.detail
    assert check.fix.startswith(f"storyreel models download wan-vace-1.3b {broken}")
    (broken / FOLDER_RECORD).write_text("[")
    assert check_wan_model(broken).status == FAIL
    assert check_wan_model(tmp_path / "nowhere").status == FAIL


@pytest.mark.slow
def test_download_names_wan_variants_and_keeps_the_folder_form(tmp_path: Path) -> None:
    offline = {"HF_HUB_OFFLINE": "1"}
    wan = storyreel("models", "download", "wan-vace-1.3b", str(tmp_path / "w"), env=offline)
    assert wan.returncode == 1 and "Wan-AI/Wan2.1-VACE-1.3B-diffusers" in wan.stderr
    assert "Traceback" not in wan.stderr and "hint" in wan.stderr
    legacy = storyreel("models", "download", str(tmp_path / "m"), env=offline)
    assert legacy.returncode == 1 and "feizhengcong/Ingredients" in legacy.stderr
    unknown = storyreel("models", "download", "wan-vace-7b", str(tmp_path / "x"))
    assert unknown.returncode == 1 and "unknown model" in unknown.stderr


@pytest.mark.parametrize(
    "damage, named",
    [
        (
            lambda m: (m / "transformer" / "config.json").write_text('{"num_layers": 2,'),
            "transformer/config.json",
        ),
        (lambda m: (m / "tokenizer" / "tokenizer.json").write_text("{}"), "tokenizer/tokenizer.json"),
        (lambda m: (m / "model_index.json").write_text("{oops"), "model_index.json"),
        (
            lambda m: (m / "scheduler" / "scheduler_config.json").write_text('{"beta_schedule": "x"}'),
            "scheduler",
        ),
        (
            lambda m: (m / "face_encoder" / "tiny_face_encoder.safetensors").write_bytes(b"\0" * 9),
            "face_encoder/",
        ),
    ],
)
def test_doctor_finds_damaged_folders(tiny_model_dir: Path, tmp_path: Path, damage, named: str) -> None:
    broken = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    damage(broken)
    checks = {c.name: c for c in check_model(broken, "--model")}
    failed = [c for c in checks.values() if c.status == FAIL]
    assert len(failed) == 1 and named in failed[0].detail, checks
    assert failed[0].fix.startswith(f"storyreel models download {broken}")


@pytest.mark.slow
def test_doctor_and_render_on_a_damaged_folder_say_what_is_wrong(
    tiny_model_dir: Path, tmp_path_factory, tmp_path: Path
) -> None:
    from tests.helpers.projects import make_project

    broken = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    config = broken / "transformer" / "config.json"
    config.write_text(config.read_text()[:100])
    doctor = storyreel("doctor", "--model", str(broken))
    assert doctor.returncode == 1 and "transformer/config.json: not valid JSON" in doctor.stdout
    project = make_project(tmp_path_factory, tmp_path / "demo", shots=1, engine="ingredients")
    render = storyreel("render", str(project), "--model", str(broken))
    assert render.returncode == 1, render.stderr
    assert "damaged file" in render.stderr and "transformer/config.json" in render.stderr
    assert f"storyreel models download {broken}" in render.stderr and "internal error" not in render.stderr
