"""CurricularFace IR-101 backbone (TFace ``IR_101``, 112x112 input, 512-d output) in plain torch.

The weights file ConsisID / Ingredients evaluate with is ``glint360k_curricular_face_r101_backbone.bin``
(a torch state dict for TFace's ``torchkit/backbone/model_irse.py:IR_101([112, 112])``), placed in the
model folder's ``face_encoder/``. The module and parameter names below match that state dict one for one.
Input: aligned RGB faces scaled to [-1, 1], shape [B, 3, 112, 112].
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ingredients_model.errors import IngredientsError

IR101_UNITS = (3, 13, 30, 3)  # basic IR blocks per stage; channels 64, 128, 256, 512


class BasicBlockIR(nn.Module):
    """TFace's BasicBlockIR: BN-conv-BN-PReLU-conv-BN residual branch, max-pool or 1x1-conv shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.BatchNorm2d(depth),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRBackbone(nn.Module):
    """TFace ``Backbone(input_size=[112, 112], mode="ir")`` with configurable stage depths/channels."""

    def __init__(self, units: tuple[int, ...] = IR101_UNITS, channels: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, channels[0], (3, 3), 1, 1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.PReLU(channels[0]),
        )
        blocks: list[nn.Module] = []
        in_channel = channels[0]
        for num, depth in zip(units, channels, strict=True):
            for i in range(num):
                blocks.append(BasicBlockIR(in_channel, depth, 2 if i == 0 else 1))
                in_channel = depth
        self.body = nn.Sequential(*blocks)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(in_channel * 7 * 7, 512),
            nn.BatchNorm1d(512, affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


def load_curricularface(weights: Path, device: str = "cpu") -> IRBackbone:
    """IR-101 with the CurricularFace weights from ``weights`` (strict key check), in eval mode."""
    weights = Path(weights)
    if not weights.is_file():
        raise IngredientsError(
            f"CurricularFace weights missing: {weights}",
            "Put glint360k_curricular_face_r101_backbone.bin (from the ConsisID-preview model folder, "
            "face_encoder/) there, or use --backend arcface / dlib.",
        )
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = IRBackbone()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise IngredientsError(
            f"{weights} is not a CurricularFace IR-101 state dict: {str(err)[:300]}",
            "Use glint360k_curricular_face_r101_backbone.bin (TFace IR_101, 112x112).",
        ) from err
    return model.to(device).eval()
