"""Fixtures for the training tests: a synthetic dataset of short videos with two coloured moving blobs
standing in for two people (boxes annotated, reference photos = real faces from insightface's sample
photo), a tiny random SAM, and prepared data built once per session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

FRAMES, WIDTH, HEIGHT = 17, 192, 128  # 9 frames at the paper's interval of 2; 3:2 like the tiny model (96x64)
COLOURS = [(220, 40, 40), (40, 80, 220)]


def write_video(path: Path, frames: list[np.ndarray], fps: int = 8) -> None:
    import imageio_ffmpeg

    height, width = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv444p",
        output_params=["-qp", "0"],
        macro_block_size=1,
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def blob_clip(seed: int, people: int = 2) -> tuple[list[np.ndarray], list[dict[str, list[float]]]]:
    """Frames with `people` ellipses moving left/right, and each blob's box per frame."""
    rng = np.random.default_rng(seed)
    frames, boxes = [], [{} for _ in range(people)]
    starts = [
        (20 + rng.integers(0, 10), 30 + rng.integers(0, 20)),
        (110 + rng.integers(0, 10), 40 + rng.integers(0, 20)),
    ]
    for t in range(FRAMES):
        image = Image.new("RGB", (WIDTH, HEIGHT), (128, 128, 128))
        draw = ImageDraw.Draw(image)
        for k in range(people):
            shift = 24 * t // (FRAMES - 1)  # 24 pixels over the clip
            x, y = starts[k][0] + (shift if k == 0 else -shift), starts[k][1]
            box = [float(x), float(y), float(x + 48), float(y + 56)]
            draw.ellipse(box, fill=COLOURS[k])
            boxes[k][str(t)] = box
        frames.append(np.asarray(image))
    return frames, boxes


@pytest.fixture(scope="session")
def face_photos(t1_jpg: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two photos of different real people (crops of insightface's t1.jpg around faces 1 and 4)."""
    folder = tmp_path_factory.mktemp("faces")
    image = Image.open(t1_jpg).convert("RGB")
    paths = []
    for name, (x0, y0, x1, y1) in {"p0": (65, 284, 170, 389), "p1": (734, 365, 838, 470)}.items():
        w, h = x1 - x0, y1 - y0
        crop = image.crop((x0 - w, y0 - h, x1 + w, y1 + h))
        paths.append(folder / f"{name}.png")
        crop.save(paths[-1])
    return paths


def write_blob_dataset(folder: Path, face_photos: list[Path], clips: int = 3, single: bool = False) -> Path:
    """Videos + manifest.jsonl; with `single` a one-person clip and a clip whose reference photo shows no
    face (both to be skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(clips):
        frames, boxes = blob_clip(i)
        write_video(folder / f"clip{i}.mp4", frames)
        people = [{"boxes": b, "reference": face_photos[k].name} for k, b in enumerate(boxes)]
        rows.append(
            {
                "video": f"clip{i}.mp4",
                "caption": f"two friends talk on a park bench, take {i}",
                "people": people,
            }
        )
    if single:
        frames, boxes = blob_clip(99, people=1)
        write_video(folder / "solo.mp4", frames)
        rows.append({"video": "solo.mp4", "caption": "a man walks", "people": [{"boxes": boxes[0]}]})
        Image.new("RGB", (200, 200), (90, 140, 90)).save(folder / "grass.png")
        people = [{"boxes": b, "reference": "grass.png"} for b in blob_clip(0)[1]]
        rows.append({"video": "clip0.mp4", "id": "noface", "caption": "two people", "people": people})
    for photo in face_photos:
        (folder / photo.name).write_bytes(photo.read_bytes())
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "manifest.jsonl"


@pytest.fixture(scope="session")
def tiny_sam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random transformers SamModel + SamProcessor folder (64 px input)."""
    import torch
    from transformers import SamConfig, SamImageProcessorPil, SamModel, SamProcessor
    from transformers.models.sam.configuration_sam import (
        SamMaskDecoderConfig,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    folder = tmp_path_factory.mktemp("sam") / "sam"
    vision = SamVisionConfig(
        hidden_size=32,
        output_channels=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=8,
        mlp_dim=64,
        global_attn_indexes=[1],
        window_size=4,
        num_pos_feats=8,
    )
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32, iou_head_hidden_dim=16
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        SamModel(
            SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
        ).save_pretrained(folder)
    processor = SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    SamProcessor(image_processor=processor).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def blob_manifest(tmp_path_factory: pytest.TempPathFactory, face_photos: list[Path]) -> Path:
    return write_blob_dataset(tmp_path_factory.mktemp("blobs"), face_photos, clips=3, single=True)


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory, blob_manifest: Path, tiny_model_dir: Path) -> Path:
    """The blob dataset prepared with box masks (exact labels) on the tiny model."""
    from ingredients_model.training.config import PrepareConfig
    from ingredients_model.training.prepare import run_prepare

    out = tmp_path_factory.mktemp("prepared") / "data"
    run_prepare(
        PrepareConfig(
            manifest=blob_manifest,
            output_dir=out,
            model_dir=tiny_model_dir,
            masks="box",
            device="cpu",
            dtype="float32",
        )
    )
    return out


def train_config(kind: str, model_dir: Path, data_dir: Path, output_dir: Path, **overrides):
    """A CPU-sized stage config: float32, no accumulation, small LoRA."""
    from ingredients_model.training.config import Stage1Config, Stage2Config

    values = dict(
        model_dir=model_dir,
        data_dir=data_dir,
        output_dir=output_dir,
        mixed_precision="no",
        gradient_checkpointing=False,
        train_batch_size=1,
        gradient_accumulation_steps=1,
        lr_warmup_steps=0,
        lora={"rank": 4, "alpha": 4},
        checkpointing_steps=1000,
        export=False,
        tensorboard=False,
        export_dtype="float32",
    )
    values.update(overrides)
    return (Stage1Config if kind == "stage1" else Stage2Config)(**values)


_FACE_KEYS = {
    "is_train_face",
    "is_kps",
    "cross_attn_interval",
    "local_face_scale",
    "cross_attn_dim_head",
    "cross_attn_num_heads",
}


def write_base_folder(tiny_model_dir: Path, out: Path, kind: str, seed: int = 1) -> Path:
    """A tiny model folder of another starting point, sized like the tiny Ingredients model:
    ``cogvideox`` (diffusers' CogVideoXTransformer3DModel, no face_encoder/) or ``consisid`` (diffusers'
    ConsisIDTransformer3DModel: face modules, no routers)."""
    import shutil

    import torch
    from diffusers import CogVideoXTransformer3DModel, ConsisIDTransformer3DModel

    from ingredients_model.tiny import tiny_transformer_config

    shutil.copytree(tiny_model_dir, out, ignore=shutil.ignore_patterns("transformer"))
    config = tiny_transformer_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "cogvideox":
            shutil.rmtree(out / "face_encoder")
            base = {k: v for k, v in config.items() if k not in _FACE_KEYS and not k.startswith("LFE_")}
            model = CogVideoXTransformer3DModel(**base)
        else:
            inner = config["num_attention_heads"] * config["attention_head_dim"]
            model = ConsisIDTransformer3DModel(**config, LFE_output_dim=int(inner / 3 * 2))
    model.save_pretrained(out / "transformer")
    return out
