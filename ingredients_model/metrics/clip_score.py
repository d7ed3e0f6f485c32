"""CLIPScore of sampled frames against a prompt, by either protocol.

- strict (ours, :meth:`ClipScorer.score`): RGB frames, ``max(100 · cos(image, text), 0)`` per frame, mean.
- released (the public ``metric/clip_score.py``, :meth:`ClipScorer.released_score`): the frames as the
  script hands them over (OpenCV's BGR arrays), ``logits_per_image`` (``logit_scale.exp()`` · cos) averaged,
  no clamp.

The paper uses CLIP ViT-B/32; load it from a local folder in the Hugging Face layout (e.g.
``huggingface-cli download openai/clip-vit-base-patch32 --local-dir DIR`` on a machine with hub access).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ingredients_model.errors import IngredientsError

CLIP_HINT = (
    "Download CLIP ViT-B/32 once: `huggingface-cli download openai/clip-vit-base-patch32 --local-dir DIR` "
    "(needs config.json, model weights, tokenizer and preprocessor_config.json) and pass that folder."
)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


class ClipScorer:
    """A CLIP model + processor loaded once from a local folder; ``score(frames, text)`` per clip."""

    def __init__(self, folder: Path, device: str = "cpu"):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        folder = Path(folder)
        missing = [] if (folder / "config.json").is_file() else ["config.json"]
        for alternatives in (WEIGHT_FILES, PROCESSOR_FILES):
            if not any((folder / name).is_file() for name in alternatives):
                missing.append(" or ".join(alternatives))
        if missing:
            raise IngredientsError(
                f"CLIP folder {folder} is incomplete, missing: {', '.join(missing)}", CLIP_HINT
            )
        try:
            self.processor = CLIPProcessor.from_pretrained(folder, local_files_only=True)
            self.model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as err:
            raise IngredientsError(f"cannot load CLIP from {folder}: {err}", CLIP_HINT) from err
        self.device = device
        self.name = str(self.model.config.name_or_path or folder)
        self._torch = torch

    def frame_scores(self, frames: Sequence[Image.Image], text: str) -> np.ndarray:
        """Per-frame ``max(100 · cos(image, text), 0)``."""
        torch = self._torch
        if not frames:
            raise ValueError("no frames to score")
        max_length = self.model.config.text_config.max_position_embeddings
        inputs = self.processor(
            text=[text],
            images=[f.convert("RGB") for f in frames],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        ).to(self.device)
        with torch.no_grad():
            image = self.model.get_image_features(pixel_values=inputs["pixel_values"])
            txt = self.model.get_text_features(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            )
        image = _as_tensor(image)
        txt = _as_tensor(txt)
        image = image / image.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        cos = (image @ txt.T).squeeze(-1).float().cpu().numpy()
        return np.clip(100.0 * cos, 0.0, None)

    def score(self, frames: Sequence[Image.Image], text: str) -> float:
        """Mean CLIPScore of ``frames`` against ``text`` (strict protocol)."""
        return float(self.frame_scores(frames, text).mean())

    def released_score(self, frames: Sequence[np.ndarray], text: str) -> float:
        """The public script's CLIPScore: ``frames`` are uint8 arrays [H, W, 3] passed to the processor as
        they are (the script passes OpenCV's BGR frames), ``logits_per_image`` averaged over frames, no clamp.
        The prompt is truncated at the text model's length (77 for CLIP, the tokenizer's own limit)."""
        if len(frames) == 0:
            raise ValueError("no frames to score")
        inputs = self.processor(
            text=text,
            images=[np.ascontiguousarray(f, dtype=np.uint8) for f in frames],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.model.config.text_config.max_position_embeddings,
        ).to(self.device)
        with self._torch.no_grad():
            outputs = self.model(**inputs)
        return float(outputs.logits_per_image.float().mean())


def _as_tensor(output):
    """transformers 5 may return a model output object; the projected features are its pooled output."""
    if hasattr(output, "pooler_output"):
        return output.pooler_output
    return output
