"""Data formats: the input manifest (JSONL) and the prepared cache read by both training stages.

Manifest, one JSON object per line (paths relative to the manifest's folder):
    {"video": "clips/a.mp4", "caption": "two people ...", "id": "a"?, "start": 0?,
     "people": [{"boxes": {"0": [x0, y0, x1, y1], "12": [...]}, "reference": "faces/alice.jpg"?}, ...]?}
`people` is optional: without it `prepare` detects and links faces itself. Boxes are in source-video pixels,
keyed by source frame index, linearly interpolated in between; `reference` is a photo of that person used
for the identity embedding instead of a crop of the video.

Prepared folder (written by `prepare`):
    index.jsonl                 {"id", "file", "caption", "num_people", "frames", "height", "width",
                                 "mask_source", "face_encoder", "reference_draws", "reference_frames"}
    prepare.json                the PrepareConfig and versions it was built with
    clips/<id>.safetensors      latents_mean, latents_std [F, C, h, w] (the VAE's latent distribution,
                                scaled), prompt_embeds [L, D], routing_mask [F, h/p, w/p] (int64, person
                                index or -1); per reference draw j: image_latents_mean.<j>,
                                image_latents_std.<j> [1, C, h, w], id_cond.<j>.<k> [id_dim],
                                id_vit_hidden.<j>.<k>.<s> [tokens, vit_dim]
    clips/<id>/person<k>.png    aligned face crop per person (draw 0); clips/<id>/mask.png label preview

A training sample is (clip, key): the key picks one reference draw (key mod draws); the latent samples
are drawn from the stored distributions per step (:func:`ingredients_model.training.model.sample_latents`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ingredients_model.errors import IngredientsError


@dataclass
class PersonAnnotation:
    boxes: dict[int, list[float]]
    reference: Path | None = None


@dataclass
class ManifestEntry:
    id: str
    video: Path
    caption: str
    people: list[PersonAnnotation] | None = None
    start: int = 0  # first source frame of the clip


def read_manifest(path: Path) -> list[ManifestEntry]:
    """Parse a JSONL manifest; IngredientsError naming the line of the first problem."""
    path = Path(path)
    if not path.is_file():
        raise IngredientsError(
            f"manifest not found: {path}", "set manifest: to a JSONL file (see training/data.py)"
        )
    entries, seen = [], set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
            video = path.parent / row.pop("video")
            caption = str(row.pop("caption"))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise IngredientsError(
                f"{where}: bad manifest line ({exc})", 'each line needs "video" and "caption"'
            ) from exc
        clip_id = str(row.pop("id", video.stem))
        try:
            start = int(row.pop("start", 0))
        except (TypeError, ValueError) as exc:
            raise IngredientsError(f"{where}: start must be a frame index", '"start": 120') from exc
        if clip_id in seen:
            raise IngredientsError(f"{where}: duplicate id {clip_id!r}", 'give each line a unique "id"')
        seen.add(clip_id)
        people = None
        if "people" in row:
            try:
                people = [
                    PersonAnnotation(
                        boxes={int(k): [float(v) for v in box] for k, box in person["boxes"].items()},
                        reference=path.parent / person["reference"] if person.get("reference") else None,
                    )
                    for person in row.pop("people")
                ]
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise IngredientsError(
                    f"{where}: bad people annotation ({exc})",
                    'people: [{"boxes": {"<frame>": [x0, y0, x1, y1]}, "reference": "photo.jpg"?}]',
                ) from exc
        entries.append(ManifestEntry(clip_id, video, caption, people, start))
    return entries


def interpolate_boxes(boxes: dict[int, list[float]], frames: list[int]) -> np.ndarray:
    """Boxes keyed by frame index → [len(frames), 4], linear in between, held constant past the ends."""
    keys = sorted(boxes)
    table = np.array([boxes[k] for k in keys], dtype=np.float64)
    return np.stack([np.interp(frames, keys, table[:, c]) for c in range(4)], axis=1)


class PreparedDataset(torch.utils.data.Dataset):
    """Samples of a prepared folder as dicts of tensors (see module docstring); index with a clip number or
    (clip number, key), the key choosing the reference draw."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        index = self.folder / "index.jsonl"
        if not index.is_file():
            raise IngredientsError(
                f"no prepared data in {self.folder} (index.jsonl missing)",
                "run `python -m ingredients_model.training prepare --config prepare.yaml` first",
            )
        self.rows = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
        if not self.rows:
            raise IngredientsError(f"{index} lists no clips", "check the prepare log for skipped clips")
        if any("reference_draws" not in row for row in self.rows):
            raise IngredientsError(
                f"{self.folder} was prepared by an older version (no reference draws, no latent statistics)",
                "run prepare again with the same config: it rebuilds the cache",
            )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        from safetensors import safe_open

        i, key = item if isinstance(item, tuple) else (item, 0)
        row = self.rows[i]
        draw = key % row["reference_draws"]
        people = row["num_people"]
        with safe_open(str(self.folder / row["file"]), framework="pt") as handle:
            names = set(handle.keys())
            scales = sorted(int(n.split(".")[3]) for n in names if n.startswith(f"id_vit_hidden.{draw}.0."))

            def get(name: str) -> torch.Tensor:
                return handle.get_tensor(name)

            return {
                "id": row["id"],
                "draw": draw,
                "latents_mean": get("latents_mean"),
                "latents_std": get("latents_std"),
                "image_latents_mean": get(f"image_latents_mean.{draw}"),
                "image_latents_std": get(f"image_latents_std.{draw}"),
                "prompt_embeds": get("prompt_embeds"),
                "routing_mask": get("routing_mask").long(),
                "id_cond": [get(f"id_cond.{draw}.{k}") for k in range(people)],
                "id_vit_hidden": [
                    [get(f"id_vit_hidden.{draw}.{k}.{s}") for s in scales] for k in range(people)
                ],
            }


def collate(samples: list[dict]) -> dict:
    """Stack samples into a batch; identities become one [B, ...] tensor per person (and per scale)."""
    people = {len(s["id_cond"]) for s in samples}
    if len(people) != 1:
        raise IngredientsError(
            f"a batch mixes clips with {sorted(people)} people",
            "use train_batch_size: 1, or prepare with min_people == max_people",
        )
    (n,) = people
    return {
        "ids": [s["id"] for s in samples],
        "draws": [s["draw"] for s in samples],
        "latents_mean": torch.stack([s["latents_mean"] for s in samples]),
        "latents_std": torch.stack([s["latents_std"] for s in samples]),
        "image_latents_mean": torch.stack([s["image_latents_mean"] for s in samples]),
        "image_latents_std": torch.stack([s["image_latents_std"] for s in samples]),
        "prompt_embeds": torch.stack([s["prompt_embeds"] for s in samples]),
        "routing_mask": torch.stack([s["routing_mask"] for s in samples]),
        "id_cond": [torch.stack([s["id_cond"][k] for s in samples]) for k in range(n)],
        "id_vit_hidden": [
            [
                torch.stack([s["id_vit_hidden"][k][j] for s in samples])
                for j in range(len(samples[0]["id_vit_hidden"][k]))
            ]
            for k in range(n)
        ],
    }


class ResumableSampler(torch.utils.data.Sampler):
    """Endless shuffled (clip, key) pairs for one process, fully determined by (seed, position): exact resume.

    Epoch e uses randperm(n, seed + e); process `rank` of `world` takes every world-th index. The key (which
    picks the reference draw) comes from (seed, epoch, index). `start` skips that many of this process's
    samples (micro-batches already seen x batch size).
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1, start: int = 0):
        self.n, self.seed, self.rank, self.world, self.start = n, seed, rank, world, start

    def __iter__(self):
        position, epoch = 0, 0
        while True:
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
            perm = perm * max(1, -(-self.world // self.n))  # fewer samples than processes
            for slot, index in enumerate(perm[self.rank :: self.world]):
                if position >= self.start:
                    key = np.random.SeedSequence([self.seed, epoch, self.rank, slot]).generate_state(1)[0]
                    yield index, int(key)
                position += 1
            epoch += 1
