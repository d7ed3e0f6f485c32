"""The released face encoder end to end, with randomly initialised weights in the released file layout.

Needs the ``[gpu]`` extra (torchvision, facexlib, consisid_eva_clip), so it is skipped in the CPU test
environment; run it where the extra is installed. The loaded RetinaFace network is run for real first;
its random weights find noise, so dlib's faces in RetinaFace's row layout stand in for its output after
that. Loading (weights-only), ArcFace, the released alignment and EVA02-CLIP-L-14-336 all run for real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")
pytest.importorskip("facexlib")
pytest.importorskip("consisid_eva_clip")

from ingredients_model.face_tools import detector_rows, load_photo
from ingredients_model.faces import (
    ARCFACE_FILE,
    EVA_CLIP_FILE,
    RETINAFACE_FILE,
    ReleasedFaceEncoder,
    load_face_encoder,
)
from tests.helpers.face_stand_ins import random_arcface_onnx

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def released_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from consisid_eva_clip import create_model
    from facexlib.detection.retinaface import RetinaFace

    root = tmp_path_factory.mktemp("released") / "face_encoder"
    (root / ARCFACE_FILE).parent.mkdir(parents=True)
    random_arcface_onnx(root / ARCFACE_FILE)
    torch.manual_seed(0)
    torch.save(
        RetinaFace(network_name="resnet50", half=False, device="cpu").state_dict(), root / RETINAFACE_FILE
    )
    torch.save(create_model("EVA02-CLIP-L-14-336", force_custom_clip=True).state_dict(), root / EVA_CLIP_FILE)
    return root


def test_released_encoder_end_to_end(released_dir: Path, t1_jpg: Path) -> None:
    encoder = load_face_encoder(released_dir)
    assert isinstance(encoder, ReleasedFaceEncoder) and encoder.arcface_dim == 512
    assert (encoder.clip_size, encoder.clip_mean) == (336, (0.48145466, 0.4578275, 0.40821073))
    image = load_photo(t1_jpg)
    bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
    found = encoder.detector(bgr)  # the loaded RetinaFace, run for real: rows above 0.97, best first
    assert found.ndim == 2 and found.shape[1] == 15 and (found[:, 4] > 0.97).all()
    assert np.all(np.diff(found[:, 4]) <= 0)
    rows = detector_rows(bgr)  # random weights find noise: dlib's real faces stand in from here on
    encoder.detector = lambda photo: rows

    top = encoder.encode(image)  # the highest-scoring face, as released
    assert top.face_box == tuple(float(v) for v in rows[0, :4])
    assert top.id_cond.shape == (1280,) and top.id_cond.dtype == torch.float32
    assert torch.linalg.norm(top.id_cond[512:]).item() == pytest.approx(1.0, abs=1e-4)
    assert [tuple(h.shape) for h in top.id_vit_hidden] == [(577, 1024)] * 5
    assert top.aligned_face.size == (512, 512)

    second, fifth = encoder.encode(image, face_index=1), encoder.encode(image, face_index=4)
    centres = sorted(rows, key=lambda r: (r[0] + r[2]) / 2)
    assert second.face_box == tuple(float(v) for v in centres[1][:4])
    assert fifth.face_box == tuple(float(v) for v in centres[4][:4])
    assert not torch.equal(second.id_cond[:512], fifth.id_cond[:512])
    assert torch.equal(second.id_cond, encoder.encode(image, face_index=1).id_cond)
