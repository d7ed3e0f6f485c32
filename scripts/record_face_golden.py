"""Record the released face preprocessing's outputs as test fixtures (tests/fixtures/face_golden.*).

Runs the public Ingredients code (``models/utils.py: process_face_embeddings_split`` with ``infer.py``'s
photo loading and canvas conversion) on two photos made from what installed packages ship (insightface's
six-person ``t1.jpg``, 1280x886, so it is also downsized; a 200x220 close-up of scikit-image's astronaut,
where the aligned crop reaches past the photo's edges), with stand-in networks:

- detector: facexlib's RetinaFace is built with random weights and its ``detect_faces`` is replaced by
  dlib's faces in RetinaFace's row layout with fixed stand-in scores (:data:`STAND_IN_SCORES`), sorted
  by score as RetinaFace returns them. These rows are recorded: they are the detector output our side
  is fed;
- parser: facexlib's BiSeNet/ParseNet with random weights (counted: the released path never calls them);
- recognizer: a random 112 → 512 ArcFace ONNX graph through insightface's ``ArcFaceONNX``;
- EVA-CLIP: a tiny stand-in with EVA-CLIP's interface (tests/helpers/face_stand_ins.py).

Needs an environment that runs the public code (torch + torchvision, facexlib, insightface, diffusers,
timm, dlib-bin, face-recognition-models, scikit-image) and imports the public code only from PATH:

    python scripts/record_face_golden.py --public-code PATH [--public-commit SHA] [--out DIR] [--eva-clip]

``--eva-clip`` also checks that consisid_eva_clip (which our encoder loads) computes what the public
code's own EVA-CLIP copy computes, on the same random EVA02-CLIP-L-14-336 weights and the recorded
EVA-CLIP inputs (slow: minutes, ~2 x 1.7 GB); the committed fixtures were recorded with it, and the
golden test expects its result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingredients_model.face_tools import detector_rows  # noqa: E402
from tests.helpers.face_stand_ins import (  # noqa: E402
    ARCFACE_SEED,
    CLIP_SEED,
    StandInClip,
    golden_photos,
    random_arcface_onnx,
)

FIXTURE = "face_golden"
WEIGHTS_SEED = 0
STAND_IN_SCORES = {
    "t1.jpg": [0.981, 0.975, 0.990, 0.985, 0.999, 0.978],
    "astronaut_close_up.png": [0.995],
}
"""Stand-in detector scores of each photo's faces, numbered left to right. t1.jpg's highest is its 5th
face: neither the leftmost, nor the largest, nor the one nearest the centre."""
SUBSAMPLE = {"aligned": 8, "canvas": 8, "clip_input": 8, "arcface_blob": 4}
"""Strides of the stored subsamples (the full arrays are checked by hash or by norms)."""


def sha256(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()


def norms(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    return {"l1": float(np.abs(x).sum()), "l2": float(np.sqrt((x * x).sum()))}


def subsample(x: np.ndarray, stride: int, axes: tuple[int, int]) -> np.ndarray:
    index = [slice(None)] * x.ndim
    for axis in axes:
        index[axis] = slice(None, None, stride)
    return np.ascontiguousarray(x[tuple(index)])


def stand_in_weights(folder: Path) -> None:
    """Random RetinaFace (resnet50), ParseNet and BiSeNet weights under facexlib's file names."""
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.bisenet import BiSeNet
    from facexlib.parsing.parsenet import ParseNet

    torch.manual_seed(WEIGHTS_SEED)
    torch.save(
        RetinaFace(network_name="resnet50", half=False, device="cpu").state_dict(),
        folder / "detection_Resnet50_Final.pth",
    )
    torch.save(
        ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), folder / "parsing_parsenet.pth"
    )
    torch.save(BiSeNet(num_class=19).state_dict(), folder / "parsing_bisenet.pth")


class StandInDetector:
    """Replaces RetinaFace.detect_faces: dlib's faces with stand-in scores (one list per call, numbered
    left to right), filtered by the threshold the caller passes, sorted by score. Records every call."""

    def __init__(self, scores_per_call: list[list[float]]) -> None:
        self.scores_per_call = iter(scores_per_call)
        self.calls: list[dict] = []

    def __call__(self, image: np.ndarray, conf_threshold: float = 0.8, *args, **kwargs) -> np.ndarray:
        scores = next(self.scores_per_call)
        rows = detector_rows(image)
        order = np.argsort((rows[:, 0] + rows[:, 2]) / 2, kind="stable")  # left to right
        if len(order) != len(scores):
            raise RuntimeError(f"dlib found {len(order)} faces, the stand-in scores expect {len(scores)}")
        rows[order, 4] = np.asarray(scores, dtype=np.float32)
        rows = rows[rows[:, 4] > conf_threshold]
        rows = rows[np.argsort(-rows[:, 4], kind="stable")]
        self.calls.append(
            {
                "input_sha256": sha256(image),
                "input_shape": list(image.shape),
                "threshold": conf_threshold,
                "rows": rows,
            }
        )
        return rows


def record(public_code: Path, out: Path, eva_clip: bool, public_commit: str | None = None) -> None:
    sys.path.insert(0, str(public_code))
    import cv2
    import facexlib
    import insightface
    import PIL
    from diffusers.utils import load_image
    from facexlib.parsing import init_parsing_model
    from facexlib.utils.face_restoration_helper import FaceRestoreHelper
    from models.eva_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from models.eva_clip.utils_qformer import resize_numpy_image_long
    from models.utils import process_face_embeddings_split
    from PIL import Image, ImageOps
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        weights = tmp / "face_encoder"
        weights.mkdir()
        stand_in_weights(weights)
        onnx_path = tmp / "glintr100.onnx"
        random_arcface_onnx(onnx_path, ARCFACE_SEED)

        # 1. the face models, as infer.py builds them (on the CPU, fp32)
        face_helper = FaceRestoreHelper(
            upscale_factor=1,
            face_size=512,
            crop_ratio=(1, 1),
            det_model="retinaface_resnet50",
            save_ext="png",
            device="cpu",
            model_rootpath=str(weights),
        )
        face_helper.face_parse = init_parsing_model(
            model_name="bisenet", device="cpu", model_rootpath=str(weights)
        )
        face_helper.face_det.eval()
        face_helper.face_parse.eval()
        parser_calls = []
        face_helper.face_parse.register_forward_hook(lambda *a: parser_calls.append(1))
        crops: list[np.ndarray] = []
        align = face_helper.align_warp_face

        def align_and_keep(*args, **kwargs):
            align(*args, **kwargs)
            crops.append(face_helper.cropped_faces[0].copy())

        face_helper.align_warp_face = align_and_keep

        clip = StandInClip(CLIP_SEED)
        clip_inputs: list[np.ndarray] = []
        forward = clip.forward

        def clip_forward(x, *args, **kwargs):
            clip_inputs.append(x.detach().numpy().copy())
            return forward(x, *args, **kwargs)

        clip.forward = clip_forward
        eva_transform_mean = getattr(clip, "image_mean", OPENAI_DATASET_MEAN)
        eva_transform_std = getattr(clip, "image_std", OPENAI_DATASET_STD)

        handler_ante = insightface.model_zoo.get_model(str(onnx_path), providers=["CPUExecutionProvider"])
        handler_ante.prepare(ctx_id=-1)
        blobs: list[tuple[np.ndarray, np.ndarray]] = []
        run = handler_ante.session.run

        def run_and_keep(names, feed, *args, **kwargs):
            out = run(names, feed, *args, **kwargs)
            blobs.append((next(iter(feed.values())).copy(), np.asarray(out[0]).copy()))
            return out

        handler_ante.session.run = run_and_keep

        # 2. the photos, as infer.py loads them
        meta_photos = []
        images = []
        for name, path in golden_photos(tmp):
            scores = STAND_IN_SCORES[name]
            image = np.array(load_image(image=str(path)).convert("RGB"))
            original = image.shape
            image = resize_numpy_image_long(image, 1024)
            images.append(image)
            meta_photos.append(
                {
                    "name": name,
                    "original_shape": list(original),
                    "loaded_shape": list(image.shape),
                    "loaded_sha256": sha256(image),
                    "scores_left_to_right": scores,
                }
            )

        # 3. the released preprocessing of the pair, in one call as in infer.py
        detector = StandInDetector([p["scores_left_to_right"] for p in meta_photos])
        face_helper.face_det.detect_faces = detector
        id_conds, id_hiddens, canvas_tensor, _, _ = process_face_embeddings_split(
            face_helper, clip, handler_ante, eva_transform_mean, eva_transform_std, None,
            "cpu", torch.float32, images, original_id_images=images, is_align_face=True,
        )  # fmt: skip
        # infer.py's conversion of the canvas tensor to the pipeline's image
        canvas = canvas_tensor.cpu().detach().squeeze().permute(1, 2, 0).numpy() * 255
        canvas = np.asarray(ImageOps.exif_transpose(Image.fromarray(canvas.astype(np.uint8))))

        outputs_per_photo = list(zip(crops, blobs, clip_inputs, detector.calls, strict=True))
        for i, (crop, (blob, embedding), pixels, call) in enumerate(outputs_per_photo):
            hidden = [h[0].detach().numpy() for h in id_hiddens[i]]
            rgb_crop = np.ascontiguousarray(crop[:, :, ::-1])
            photo = meta_photos[i]
            centres = (call["rows"][:, 0] + call["rows"][:, 2]) / 2
            photo.update(
                {
                    "detector_input_sha256": call["input_sha256"],
                    "detector_input_shape": call["input_shape"],
                    "detection_threshold": call["threshold"],
                    "chosen_row": 0,
                    "chosen_left_to_right": int(np.argsort(np.argsort(centres, kind="stable"))[0]),
                    "aligned_sha256": sha256(rgb_crop),
                    "aligned_shape": list(rgb_crop.shape),
                    "arcface_blob_shape": list(blob.shape),
                    "arcface_blob_norms": norms(blob),
                    "clip_input_shape": list(pixels.shape),
                    "clip_input_norms": norms(pixels),
                    "id_vit_hidden_shapes": [list(h.shape) for h in hidden],
                }
            )
            prefix = f"photo{i}."
            tensors[prefix + "detector_rows"] = call["rows"].astype(np.float32)
            tensors[prefix + "aligned_sub"] = subsample(rgb_crop, SUBSAMPLE["aligned"], (0, 1))
            tensors[prefix + "arcface_blob_sub"] = subsample(blob, SUBSAMPLE["arcface_blob"], (2, 3))
            tensors[prefix + "arcface_embedding"] = embedding.reshape(-1).astype(np.float32)
            tensors[prefix + "clip_input_sub"] = subsample(pixels, SUBSAMPLE["clip_input"], (2, 3))
            tensors[prefix + "id_cond"] = id_conds[i][0].detach().numpy().astype(np.float32)
            for k, h in enumerate(hidden):
                tensors[prefix + f"id_vit_hidden.{k}"] = h.astype(np.float32)
        tensors["canvas_sub"] = subsample(canvas, SUBSAMPLE["canvas"], (0, 1))
        onnx_sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        eva_check = (
            check_eva_clip(public_code, tmp, np.stack([p for _, _, p, _ in outputs_per_photo])[:, 0])
            if eva_clip
            else None
        )

    commit = (
        public_commit
        or subprocess.run(
            ["git", "-C", str(public_code), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )
    meta = {
        "about": "Outputs of the public Ingredients face preprocessing with stand-in networks; "
        "regenerate with scripts/record_face_golden.py --public-code PATH",
        "public_code": {
            "commit": commit or "unknown (an extracted copy)",
            "function": "models/utils.py:process_face_embeddings_split",
        },
        "versions": {
            "torch": torch.__version__,
            "opencv": cv2.__version__,
            "pillow": PIL.__version__,
            "numpy": np.__version__,
            "facexlib": getattr(facexlib, "__version__", "?"),
            "insightface": insightface.__version__,
        },
        "seeds": {"stand_in_weights": WEIGHTS_SEED, "arcface_onnx": ARCFACE_SEED, "stand_in_clip": CLIP_SEED},
        "arcface_onnx_sha256": onnx_sha,
        "arcface_input": {
            "mean": handler_ante.input_mean,
            "std": handler_ante.input_std,
            "size": list(handler_ante.input_size),
        },
        "clip": {
            "image_size": clip.image_size,
            "mean": list(eva_transform_mean),
            "std": list(eva_transform_std),
            "public_default_mean": list(OPENAI_DATASET_MEAN),
            "public_default_std": list(OPENAI_DATASET_STD),
        },
        "template": face_helper.face_template.tolist(),
        "parser_calls": len(parser_calls),
        "subsample_strides": SUBSAMPLE,
        "photos": meta_photos,
        "canvas": {"sha256": sha256(canvas), "shape": list(canvas.shape)},
        "eva_clip_check": eva_check,
        "shapes": {k: list(v.shape) for k, v in sorted(tensors.items())},
    }
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / f"{FIXTURE}.safetensors"))
    (out / f"{FIXTURE}.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    size = sum((out / f"{FIXTURE}.{ext}").stat().st_size for ext in ("safetensors", "json"))
    print(
        f"wrote {out / FIXTURE}.safetensors/.json ({size / 1024:.0f} KiB); parser calls: {len(parser_calls)}"
    )


def check_eva_clip(public_code: Path, tmp: Path, pixels: np.ndarray) -> dict:
    """The public code's EVA-CLIP copy and consisid_eva_clip on the same random weights and inputs."""
    import consisid_eva_clip
    from models.eva_clip import create_model_and_transforms as public_create

    torch.manual_seed(WEIGHTS_SEED)
    path = tmp / "EVA02_CLIP_L_336_psz14_s6B.pt"
    torch.save(
        consisid_eva_clip.create_model("EVA02-CLIP-L-14-336", force_custom_clip=True).state_dict(), path
    )
    results = {}
    x = torch.from_numpy(pixels)
    for name, create in (
        ("public", public_create),
        ("consisid_eva_clip", consisid_eva_clip.create_model_and_transforms),
    ):
        model, _, _ = create("EVA02-CLIP-L-14-336", str(path), force_custom_clip=True)
        visual = model.visual.eval()
        with torch.no_grad():
            pooled, hidden = visual(x, return_all_features=False, return_hidden=True, shuffle=False)
        results[name] = (visual.image_size, visual.image_mean, visual.image_std, pooled, hidden)
        del model, visual
    a, b = results["public"], results["consisid_eva_clip"]
    diff = max(
        [float((a[3] - b[3]).abs().max())]
        + [float((p - q).abs().max()) for p, q in zip(a[4], b[4], strict=True)]
    )
    check = {
        "same_image_size_mean_std": a[:3] == b[:3],
        "max_abs_diff_pooled_and_hidden": diff,
        "pooled_shape": list(a[3].shape),
        "hidden_shapes": [list(h.shape) for h in a[4]],
    }
    print("EVA-CLIP public copy vs consisid_eva_clip:", check)
    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--public-code", type=Path, required=True, help="a checkout of github.com/feizc/Ingredients"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    parser.add_argument("--public-commit", help="the public code's commit, when PATH is not a git checkout")
    parser.add_argument(
        "--eva-clip", action="store_true", help="also compare consisid_eva_clip with the public EVA-CLIP"
    )
    args = parser.parse_args()
    if not (args.public_code / "models" / "utils.py").is_file():
        parser.error(f"{args.public_code} has no models/utils.py: pass the public Ingredients code")
    record(args.public_code.resolve(), args.out, args.eva_clip, args.public_commit)


if __name__ == "__main__":
    main()
