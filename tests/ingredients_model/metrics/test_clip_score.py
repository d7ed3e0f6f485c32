import numpy as np
import pytest
import torch
from PIL import Image

from ingredients_model.errors import IngredientsError
from ingredients_model.metrics.clip_score import ClipScorer
from ingredients_model.metrics.tiny import write_tiny_clip_folder


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return ClipScorer(write_tiny_clip_folder(tmp_path_factory.mktemp("clip") / "clip"))


def _frames(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (48, 64, 3)).astype(np.uint8)) for _ in range(n)]


def test_frame_scores_are_clipped_scaled_cosines(scorer):
    frames = _frames(4)
    text = "a woman laughing at a cafe table"
    scores = scorer.frame_scores(frames, text)
    assert scores.shape == (4,)
    assert np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 100))
    # independent computation with the same model
    inputs = scorer.processor(text=[text], images=frames, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = scorer.model(**inputs)
    expected = np.clip(
        100 * out.logits_per_image[:, 0].numpy() / scorer.model.logit_scale.exp().item(), 0, None
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    assert scorer.score(frames, text) == pytest.approx(float(expected.mean()), abs=1e-4)


def test_long_prompts_are_truncated(scorer):
    assert np.isfinite(scorer.score(_frames(1), "a person smiling " * 100))


def test_incomplete_folder_names_missing_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(IngredientsError, match=r"model.safetensors") as err:
        ClipScorer(tmp_path)
    assert "clip-vit-base-patch32" in err.value.hint
