"""Stand-ins for the released face networks, built deterministically from seeds (NumPy generators, so the
same numbers come out under any torch version). Shared by the face tests and
``scripts/record_face_golden.py``, which runs them through the public Ingredients code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ingredients_model.face_preprocessing import CLIP_MEAN, CLIP_STD

ARCFACE_SEED = 0
CLIP_SEED = 1
ASTRONAUT_CLOSE_UP = (slice(40, 260), slice(130, 330))
"""Rows and columns of scikit-image's astronaut kept in the close-up golden photo: the aligned crop's
window reaches past the photo's edges there, so facexlib's grey border shows."""


def golden_photos(folder: Path) -> list[tuple[str, Path]]:
    """The face-golden photos: insightface's ``t1.jpg`` (1280x886, six people: downsizing and face choice)
    and a 200x220 close-up of scikit-image's astronaut written to ``folder`` as PNG (small photo, border)."""
    import insightface
    from PIL import Image
    from skimage import data

    close_up = Path(folder) / "astronaut_close_up.png"
    Image.fromarray(np.ascontiguousarray(data.astronaut()[ASTRONAUT_CLOSE_UP])).save(close_up)
    t1 = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    return [("t1.jpg", t1), ("astronaut_close_up.png", close_up)]


def random_arcface_onnx(path: Path, seed: int = ARCFACE_SEED) -> None:
    """A randomly initialised 112x112 → 512 ONNX graph (conv, relu, linear) with glintr100's interface:
    ``insightface.model_zoo.get_model`` turns it into an ``ArcFaceONNX`` (input mean = std = 127.5)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    conv = numpy_helper.from_array(rng.normal(0, 0.1, (8, 3, 8, 8)).astype(np.float32), "conv_w")
    fc = numpy_helper.from_array(rng.normal(0, 0.1, (8 * 14 * 14, 512)).astype(np.float32), "fc_w")
    shape = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["input.1", "conv_w"], ["c"], strides=[8, 8]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Reshape", ["r", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "fc_w"], ["683"]),
    ]
    graph = helper.make_graph(
        nodes,
        "arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])],
        [conv, fc, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


class StandInClip(torch.nn.Module):
    """EVA-CLIP's visual-tower interface (``image_size`` 336, OpenAI mean/std, ``forward(x,
    return_all_features, return_hidden, shuffle)`` → pooled ``[B, 768]``, hidden states) with tiny
    fixed random weights: an 8x8 average pool followed by linear maps. Keeps its last input."""

    image_size = 336
    image_mean = CLIP_MEAN
    image_std = CLIP_STD

    def __init__(
        self, seed: int = CLIP_SEED, pooled_dim: int = 768, scales: int = 5, tokens: int = 4, width: int = 8
    ):
        super().__init__()
        rng = np.random.default_rng(seed)
        features = 3 * 8 * 8
        self.pooled = torch.nn.Parameter(
            torch.from_numpy(rng.normal(0, 0.2, (features, pooled_dim)).astype(np.float32))
        )
        self.hidden = torch.nn.Parameter(
            torch.from_numpy(rng.normal(0, 0.2, (features, scales * tokens * width)).astype(np.float32))
        )
        self.shape = (scales, tokens, width)
        self.last_input: torch.Tensor | None = None

    def forward(
        self,
        x: torch.Tensor,
        return_all_features: bool = False,
        return_hidden: bool = True,
        shuffle: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self.last_input = x.detach().clone()
        f = torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)
        hidden = (f @ self.hidden).view(x.shape[0], *self.shape)
        return f @ self.pooled, list(hidden.unbind(1))
