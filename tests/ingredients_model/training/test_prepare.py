"""prepare: masks of the right shape and labels, cached tensors, skipped clips, SAM and detection paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ingredients_model.errors import IngredientsError
from ingredients_model.training.config import PrepareConfig, load_config
from ingredients_model.training.data import PreparedDataset, collate, read_manifest
from ingredients_model.training.prepare import run_prepare

from .conftest import FRAMES, blob_clip, write_video

GRID = (3, 4, 6)  # tiny model: 9 frames → 3 latent frames; 64x96 px → 8x12 latents → 4x6 patches


def test_box_masks_follow_the_blobs(prepared_dir: Path) -> None:
    rows = [json.loads(line) for line in (prepared_dir / "index.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["clip0", "clip1", "clip2"]  # the one-person clip is skipped
    skipped = json.loads((prepared_dir / "skipped.0.json").read_text())["skipped"]
    assert [s["id"] for s in skipped] == ["solo", "noface"]
    assert "1 people found" in skipped[0]["reason"] and "no face" in skipped[1]["reason"]
    tensors = load_file(prepared_dir / rows[0]["file"])
    assert tensors["latents_mean"].shape == tensors["latents_std"].shape == (3, 4, 8, 12)
    assert (tensors["latents_std"] > 0).all()  # the distribution is cached, not a sample
    # every person has a reference photo: one draw (a random frame is drawn only for people without one)
    assert rows[0]["reference_draws"] == 1 and rows[0]["reference_frames"] == [[None, None]]
    assert tensors["image_latents_mean.0"].shape == (1, 4, 8, 12) and tensors["id_cond.0.1"].shape == (8,)
    assert tensors["prompt_embeds"].shape == (226, 32)
    mask = tensors["routing_mask"]
    assert mask.shape == GRID and mask.dtype == torch.int64
    assert set(mask.unique().tolist()) == {-1, 0, 1}
    # person 0 (red, starts left) owns the left part of the frame, person 1 the right part
    _, boxes = blob_clip(0)
    for k, box in enumerate(boxes):
        x0, _, x1, _ = box["0"]
        col = int((x0 + x1) / 2 / 192 * 6)  # box centre at frame 0 in token columns (crop is the full frame)
        assert (mask[0, :, col] == k).any()
    assert (mask[:, :, 0] != 1).all() and (mask[:, :, -1] != 0).all()
    assert (prepared_dir / "clips" / "clip0" / "person0.png").is_file()


def test_prepared_dataset_batches(prepared_dir: Path) -> None:
    dataset = PreparedDataset(prepared_dir)
    batch = collate([dataset[0], dataset[(1, 7)]])
    assert batch["latents_mean"].shape == batch["latents_std"].shape == (2, 3, 4, 8, 12)
    assert batch["image_latents_mean"].shape == (2, 1, 4, 8, 12) and batch["draws"] == [0, 0]
    assert batch["routing_mask"].shape == (2, *GRID)
    assert len(batch["id_cond"]) == 2 and batch["id_cond"][0].shape == (2, 8)
    assert len(batch["id_vit_hidden"][1]) == 2 and batch["id_vit_hidden"][1][0].dim() == 3
    # different people → different identities
    assert not torch.equal(batch["id_cond"][0][0], batch["id_cond"][1][0])


@pytest.mark.slow
def test_sam_masks(tmp_path: Path, blob_manifest: Path, tiny_model_dir: Path, tiny_sam_dir: Path) -> None:
    lines = blob_manifest.read_text().splitlines()[:1]
    manifest = blob_manifest.parent / "one.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    config = PrepareConfig(
        manifest=manifest,
        output_dir=tmp_path / "out",
        model_dir=tiny_model_dir,
        sam_dir=tiny_sam_dir,
        mask_threshold=-2.0,
        device="cpu",
        dtype="float32",
    )
    rows = run_prepare(config)
    assert len(rows) == 1 and rows[0]["mask_source"] == "sam"
    mask = load_file(tmp_path / "out" / rows[0]["file"])["routing_mask"]
    assert mask.shape == GRID
    assert set(mask.unique().tolist()) <= {-1, 0, 1}
    cached = tmp_path / "out" / rows[0]["file"]
    stamp = cached.stat().st_mtime_ns
    assert run_prepare(config) == rows and cached.stat().st_mtime_ns == stamp  # up to date: not rebuilt
    # another threshold changes the clip key: rebuilt; above every logit only background is left
    high = config.model_copy(update={"mask_threshold": 1e9, "empty_mask_fallback": False})
    rebuilt = run_prepare(high)
    assert rebuilt[0]["key"] != rows[0]["key"]
    assert (load_file(cached)["routing_mask"] == -1).all()
    # ... unless empty SAM masks fall back to the face boxes: then the masks are the box masks
    run_prepare(high.model_copy(update={"empty_mask_fallback": True}))
    box = config.model_copy(update={"masks": "box", "sam_dir": None, "output_dir": tmp_path / "box"})
    box_mask = load_file(tmp_path / "box" / run_prepare(box)[0]["file"])["routing_mask"]
    assert torch.equal(load_file(cached)["routing_mask"], box_mask)


def test_manifest_errors(tmp_path: Path) -> None:
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"video": "a.mp4", "caption": "x"}\n{"caption": "no video"}\n')
    with pytest.raises(IngredientsError, match=r"m.jsonl:2"):
        read_manifest(bad)
    yaml_file = tmp_path / "prepare.yaml"
    yaml_file.write_text("manifest: m.jsonl\noutput_dir: out\nmodel_dir: model\n")
    with pytest.raises(IngredientsError, match="sam_dir"):
        load_config(yaml_file, "prepare")
    yaml_file.write_text(
        "manifest: m.jsonl\noutput_dir: out\nmodel_dir: model\nmasks: box\nlearning_rate: 1\n"
    )
    with pytest.raises(IngredientsError, match="learning_rate"):
        load_config(yaml_file, "prepare")
    yaml_file.write_text("manifest: m.jsonl\noutput_dir: out\nmodel_dir: model\nmasks: box\n")
    assert load_config(yaml_file, "prepare").manifest == bad


@pytest.mark.slow
def test_detects_and_links_real_faces(tmp_path: Path, face_photos: list[Path], tiny_model_dir: Path) -> None:
    """No annotations: dlib finds both faces in every frame and links them into two people."""
    from PIL import Image

    from ingredients_model.face_tools import (
        SAME_PERSON_THRESHOLD,
        detect_faces,
        face_descriptor,
        face_distance,
        load_photo,
    )

    faces = [Image.open(p).convert("RGB").resize((240, 240)) for p in face_photos]
    frames = []
    for t in range(FRAMES):
        canvas = Image.new("RGB", (576, 384), (200, 200, 200))
        canvas.paste(faces[1], (20 + 2 * t, 70))  # person from photo 1 on the left
        canvas.paste(faces[0], (316 - 2 * t, 60))
        frames.append(np.asarray(canvas))
    write_video(tmp_path / "faces.mp4", frames)
    (tmp_path / "m.jsonl").write_text(json.dumps({"video": "faces.mp4", "caption": "two people"}) + "\n")
    config = PrepareConfig(
        manifest=tmp_path / "m.jsonl",
        output_dir=tmp_path / "out",
        model_dir=tiny_model_dir,
        masks="box",
        detector="dlib",
        device="cpu",
        dtype="float32",
    )
    rows = run_prepare(config)
    assert len(rows) == 1 and rows[0]["num_people"] == 2
    # no reference photos: each draw encodes a random frame per person
    assert len({frames[0] for frames in rows[0]["reference_frames"]}) > 1
    mask = load_file(tmp_path / "out" / rows[0]["file"])["routing_mask"]
    assert mask.shape == GRID and set(mask.unique().tolist()) <= {-1, 0, 1}
    assert rows[0]["reference_draws"] == 4
    # person 0 is the one on the left (photo 1), person 1 the one on the right (photo 0)
    clip = tmp_path / "out" / "clips" / "faces"
    for k, photo in enumerate([face_photos[1], face_photos[0]]):
        crop, other = Image.open(clip / f"person{k}.png"), Image.open(clip / f"person{1 - k}.png")
        ref = load_photo(photo)
        ref_box = detect_faces(ref)[0]
        mine = face_distance(face_descriptor(crop, detect_faces(crop)[0]), face_descriptor(ref, ref_box))
        theirs = face_distance(face_descriptor(other, detect_faces(other)[0]), face_descriptor(ref, ref_box))
        assert mine < SAME_PERSON_THRESHOLD < theirs
