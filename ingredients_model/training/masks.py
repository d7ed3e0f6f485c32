"""Per-person masks: SAM prompted with face boxes (or box-only masks), label maps, latent-grid downsampling.

A label map holds, per pixel, the index of the person (0..N-1, left to right) or -1 for background.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ingredients_model.errors import IngredientsError

BACKGROUND = -1


def box_scores(boxes: np.ndarray, height: int, width: int) -> torch.Tensor:
    """Box-only masks as scores [N, H, W]: 1/area inside a box (smaller box in front), -inf outside."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = torch.full((len(boxes), height, width), float("-inf"))
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        xa, ya = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
        xb, yb = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
        if xb > xa and yb > ya:
            scores[k, ya:yb, xa:xb] = 1.0 / ((xb - xa) * (yb - ya))
    return scores


def labels_from_scores(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """[N, H, W] per-person scores → [H, W] long: the best-scoring person above `threshold`, else -1."""
    best, index = scores.max(dim=0)
    return torch.where(best > threshold, index, torch.full_like(index, BACKGROUND))


def sam_labels(
    logits: torch.Tensor, threshold: float, box_labels: torch.Tensor | None = None
) -> torch.Tensor:
    """One frame's SAM logits [N, H, W] → label map; a person whose mask is empty in this frame takes
    their box region from `box_labels` (where no other person's mask is) when given."""
    labels = labels_from_scores(logits, threshold)
    if box_labels is not None:
        for person in range(logits.shape[0]):
            if not bool((labels == person).any()):
                labels = torch.where((box_labels == person) & (labels == BACKGROUND), person, labels)
    return labels


class SamMasker:
    """transformers `SamModel` + `SamProcessor` from a local folder, prompted with one box per person."""

    def __init__(self, folder: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        from transformers import SamModel, SamProcessor

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise IngredientsError(
                f"no SAM model in {folder} (config.json missing)",
                "download one (e.g. `hf download facebook/sam-vit-huge --local-dir DIR`) and set"
                " sam_dir: DIR, or use masks: box",
            )
        self.device, self.dtype = torch.device(device), dtype
        self.model = SamModel.from_pretrained(folder, torch_dtype=dtype).to(self.device).eval()
        self.processor = SamProcessor.from_pretrained(folder)

    @torch.no_grad()
    def logits(self, frames: Sequence[Image.Image], boxes: np.ndarray, batch_frames: int = 4) -> torch.Tensor:
        """Mask logits [T, N, H, W] at frame resolution for `boxes` [T, N, 4] (x0, y0, x1, y1 pixels)."""
        out = []
        for start in range(0, len(frames), batch_frames):
            chunk = list(frames[start : start + batch_frames])
            chunk_boxes = [
                [list(map(float, b)) for b in frame_boxes]
                for frame_boxes in boxes[start : start + len(chunk)]
            ]
            inputs = self.processor(images=chunk, input_boxes=chunk_boxes, return_tensors="pt")
            pred = self.model(
                pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
                input_boxes=inputs["input_boxes"].to(self.device, self.dtype),
                multimask_output=False,
            ).pred_masks  # [b, N, 1, h, w]
            masks = self.processor.image_processor.post_process_masks(
                pred.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"], binarize=False
            )
            out.extend(m[:, 0] for m in masks)
        return torch.stack(out)


def latent_frame_groups(frames: int, temporal_ratio: int = 4) -> list[range]:
    """The video frames behind each latent frame of CogVideoX's causal VAE: frame 0 alone, then groups of
    ``temporal_ratio`` (1–4, 5–8, …). ``frames`` must be ``temporal_ratio · k + 1``."""
    if frames < 1 or (frames - 1) % temporal_ratio:
        raise ValueError(f"{frames} frames do not fit a causal VAE with temporal ratio {temporal_ratio}")
    return [range(0, 1)] + [
        range(1 + temporal_ratio * f, 1 + temporal_ratio * (f + 1))
        for f in range((frames - 1) // temporal_ratio)
    ]


def label_coverage(
    labels: torch.Tensor, num_people: int, size: tuple[int, int, int], temporal_ratio: int = 4
):
    """Per person and latent token, the fraction of the token's pixels (over its frames) the person covers:
    [F, N, h, w] in 0..1, from label maps [T, H, W] (area averaging: ``interpolate(mode="area")``)."""
    frames, height, width = size
    onehot = F.one_hot((labels.long() + 1).clamp(min=0), num_people + 1)[
        ..., 1:
    ]  # [T, H, W, N], no background
    spatial = F.interpolate(
        onehot.permute(0, 3, 1, 2).float(), size=(height, width), mode="area"
    )  # [T, N, h, w]
    groups = latent_frame_groups(labels.shape[0], temporal_ratio)
    if len(groups) != frames:
        raise ValueError(f"{labels.shape[0]} frames make {len(groups)} latent frames, not {frames}")
    return torch.stack([spatial[list(group)].mean(dim=0) for group in groups])


def downsample_labels(
    labels: torch.Tensor,
    num_people: int,
    size: tuple[int, int, int],
    coverage: float = 0.25,
    temporal_ratio: int = 4,
) -> torch.Tensor:
    """Label maps [T, H, W] → [F, h, w] on the latent token grid by area coverage.

    A token belongs to the person covering the largest fraction of its pixels (over the video frames behind
    its latent frame, :func:`latent_frame_groups`) when that fraction is at least ``coverage``; otherwise it
    is background (-1), which the routing loss ignores. Point-sampling the label maps instead would call a
    token 35 % covered by a person background.
    """
    best, index = label_coverage(labels, num_people, size, temporal_ratio).max(dim=1)
    return torch.where(best >= coverage, index, torch.full_like(index, BACKGROUND))


def label_preview(labels: torch.Tensor) -> Image.Image:
    """A colour image of one label map [H, W] for inspection (black background)."""
    palette = np.array([[0, 0, 0], [230, 60, 60], [60, 120, 230], [60, 200, 90], [230, 200, 50]], np.uint8)
    index = (labels.long() + 1).clamp(max=len(palette) - 1).numpy()
    return Image.fromarray(palette[index])
