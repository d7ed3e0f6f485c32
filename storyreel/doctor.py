"""`storyreel doctor`: what this machine can render, what is missing, and the exact command that fixes it."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "fail"
GPU_EXTRA = ("torchvision", "facexlib", "consisid_eva_clip", "timm")
INSTALL_GPU = "pip install 'storyreel[gpu]'  (see the README: torch with CUDA first)"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_ffmpeg() -> list[Check]:
    from storyreel.errors import StoryreelError
    from storyreel.ffmpeg_tools import ffmpeg_exe

    try:
        exe = ffmpeg_exe()
    except StoryreelError as err:
        return [Check("ffmpeg", FAIL, err.message, err.hint or "")]
    try:
        out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30)
        version = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        fix = "pip install --force-reinstall imageio-ffmpeg"
        return [Check("ffmpeg", FAIL, f"{exe} does not run: {err}", fix)]
    first = (version.stdout.splitlines() or [""])[0]
    if "libx264" not in out.stdout:
        return [Check("ffmpeg", FAIL, f"{exe}: no libx264 encoder", "pip install imageio-ffmpeg")]
    version_number = first.removeprefix("ffmpeg version ").split(" ")[0]
    return [Check("ffmpeg", OK, f"{version_number} with libx264 ({exe})")]


def check_torch() -> list[Check]:
    try:
        import torch
    except ImportError as err:
        return [Check("torch", FAIL, f"cannot import torch: {err}", "bash scripts/setup")]
    checks = [Check("torch", OK, torch.__version__)]
    if not torch.cuda.is_available():
        build = "CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build, no GPU"
        checks.append(
            Check(
                "CUDA GPU",
                WARN,
                f"none ({build}): the preview engine works; the model runs on the CPU only for tiny tests",
                "on a GPU machine: bash scripts/setup --gpu",
            )
        )
        return checks
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        name = torch.cuda.get_device_name(index)
        gib = total / 2**30
        mode = "none" if free / 2**30 >= 36 else "model_offload" if free / 2**30 >= 20 else "group_offload"
        status = OK if gib >= 20 else WARN
        fix = "" if status == OK else "use --memory group_offload (slower), or a GPU with ≥ 24 GB"
        detail = f"{name}, {gib:.0f} GB ({free / 2**30:.0f} free → memory {mode})"
        checks.append(Check(f"GPU {index}", status, detail, fix))
    return checks


def check_packages() -> list[Check]:
    checks = []
    for dist in (
        "accelerate",
        "diffusers",
        "transformers",
        "ftfy",
    ):  # ftfy: WanVACEPipeline's prompt cleaning
        version = _version(dist)
        checks.append(
            Check(dist, OK, version)
            if version and importlib.util.find_spec(dist)
            else Check(dist, FAIL, "not installed", f"pip install {dist}")
        )
    try:
        from ingredients_model.face_tools import detect_faces  # noqa: F401  (dlib + its weights)

        detail = f"dlib-bin {_version('dlib-bin') or '?'} + face_recognition_models"
        checks.append(Check("dlib faces", OK, detail))
    except Exception as err:  # any import failure means the same fix
        fix = "pip install dlib-bin face-recognition-models 'setuptools<81'"
        checks.append(Check("dlib faces", FAIL, f"{type(err).__name__}: {err}", fix))
    try:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
        cuda = "CUDAExecutionProvider" in providers
        names = ", ".join(p.removesuffix("ExecutionProvider") for p in providers)
        fix = "" if cuda else "for ArcFace on a GPU: bash scripts/setup --gpu (onnxruntime-gpu instead)"
        checks.append(Check("onnxruntime", OK if cuda else WARN, f"{onnxruntime.__version__}: {names}", fix))
    except ImportError:
        checks.append(Check("onnxruntime", FAIL, "not installed", "pip install onnxruntime"))
    return checks


def check_gpu_extra() -> Check:
    """The ``[gpu]`` extra (needed by the released face encoder) imports, checked in a subprocess."""
    missing = [name for name in GPU_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        return Check("[gpu] extra", WARN, "not installed: " + ", ".join(missing), INSTALL_GPU)
    probe = subprocess.run(
        [sys.executable, "-c", "import " + ", ".join(GPU_EXTRA)], capture_output=True, text=True, timeout=300
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return Check("[gpu] extra", FAIL, f"installed but does not import: {last}", INSTALL_GPU)
    return Check("[gpu] extra", OK, ", ".join(f"{n} {_version(n) or ''}".strip() for n in GPU_EXTRA))


def check_model(model_dir: Path | None, source: str = "") -> list[Check]:
    """The model folder, split into the diffusion model and the face encoder: every file there, every
    config, index and weight header intact, and the small parts loading (the large ones built from their
    configs on the meta device and compared with the weights)."""
    if model_dir is None:
        return [
            Check(
                "model folder",
                WARN,
                "none given (--model or $STORYREEL_MODEL): only the preview engine can render",
                "storyreel models download DIR   (or a tiny test model: storyreel models tiny DIR)",
            )
        ]
    from ingredients_model.checkpoint import DEFAULT_REPO_ID, missing_files, model_revision
    from ingredients_model.folder_checks import damaged_files, unloadable_parts

    where = f"{model_dir}" + (f" (from {source})" if source else "")
    if not model_dir.is_dir():
        fix = f"storyreel models download {model_dir}"
        return [Check("model folder", FAIL, f"{where} does not exist", fix)]
    problems = [f"missing {name}" for name in missing_files(model_dir)]
    problems += damaged_files(model_dir)
    if not problems:
        problems = unloadable_parts(model_dir)
    for_face = [p for p in problems if p.removeprefix("missing ").startswith("face_encoder")]
    for_model = [p for p in problems if p not in for_face]
    fix = f"storyreel models download {model_dir}   (resumes; repo {DEFAULT_REPO_ID})"
    return [
        Check("model folder", FAIL, f"{where}: " + "; ".join(for_model), fix)
        if for_model
        else Check(
            "model folder", OK, f"{where} complete and loadable, revision {model_revision(model_dir)}"
        ),
        Check("face encoder", FAIL, "; ".join(for_face), fix)
        if for_face
        else Check("face encoder", OK, f"{model_dir / 'face_encoder'} complete"),
    ]


def check_wan_model(model_dir: Path | None, source: str = "") -> Check:
    """The Wan VACE folder (optional: only the wan-vace engine needs it): complete, which variant, what
    memory each mode needs."""
    from storyreel.errors import StoryreelError

    name = "wan-vace model"
    if model_dir is None:
        detail = "none given (--wan-model or $STORYREEL_WAN_MODEL): the wan-vace engine is unavailable"
        return Check(name, WARN, detail, "storyreel models download wan-vace-1.3b DIR   (optional)")
    from storyreel.models import wan_vace

    where = f"{model_dir}" + (f" (from {source})" if source else "")
    fix = f"storyreel models download wan-vace-1.3b {model_dir}   (or wan-vace-14b; resumes)"
    if not model_dir.is_dir():
        return Check(name, FAIL, f"{where} does not exist", fix)
    try:
        record = wan_vace.read_record(model_dir)
    except StoryreelError as err:
        return Check(name, FAIL, err.message, err.hint or "")
    if record is not None and record.variant in wan_vace.VARIANTS:
        fix = f"storyreel models download {record.variant} {model_dir}   (resumes)"
    missing = wan_vace.missing_files(model_dir)
    if missing:
        return Check(name, FAIL, f"{where}: missing " + ", ".join(missing), fix)
    native = wan_vace.native_format(model_dir)
    none_gib, offload_gib = wan_vace.memory_thresholds(model_dir)
    detail = (
        f"{where} complete ({record.variant if record else 'variant not recorded'}), revision "
        f"{wan_vace.model_revision(model_dir)}; {native.width}x{native.height} or {native.height}x"
        f"{native.width}, {native.max_frames} frames at {native.fps} fps; estimated GPU memory: "
        f"{none_gib:.0f} GiB for --memory none, {offload_gib:.0f} GiB for model_offload, less with "
        "group_offload"
    )
    return Check(name, OK, detail)


def run_checks(
    model_dir: Path | None, source: str = "", wan_model_dir: Path | None = None, wan_source: str = ""
) -> list[Check]:
    """Every check, in the order the table shows them."""
    return [
        *check_ffmpeg(),
        *check_torch(),
        *check_packages(),
        check_gpu_extra(),
        *check_model(model_dir, source),
        check_wan_model(wan_model_dir, wan_source),
    ]
