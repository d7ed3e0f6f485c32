import numpy as np
import pytest
from PIL import Image, ImageOps

from ingredients_model.errors import IngredientsError
from ingredients_model.metrics.face_similarity import (
    DlibBackend,
    arcface_available,
    clip_face_similarity,
    load_face_backend,
    reference_face,
)
from tests.helpers.face_models import DlibKeypointDetector, write_tiny_arcface_onnx


@pytest.fixture(scope="module")
def dlib_backend():
    return DlibBackend()


@pytest.fixture(scope="module")
def group(t1_jpg):
    return Image.open(t1_jpg).convert("RGB")


def test_same_person_mirrored_beats_different_people(dlib_backend, astronaut_png, group):
    astronaut = Image.open(astronaut_png).convert("RGB")
    ref = reference_face(dlib_backend, astronaut).embedding
    same = clip_face_similarity(dlib_backend, [ref], [ImageOps.mirror(astronaut)])
    other = clip_face_similarity(dlib_backend, [ref], [group])
    assert same.summary.face_sim is not None and other.summary.face_sim is not None
    assert same.summary.face_sim > dlib_backend.same_person_threshold > other.summary.face_sim
    assert 0 <= other.summary.face_sim <= same.summary.face_sim <= 1
    assert other.summary.max_detections == 6  # every face in the group photo is detected
    assert other.frames[0].extra  # and all but the best one are left unmatched


def test_two_references_matched_one_to_one_in_a_group(dlib_backend, group):
    faces = dlib_backend.detect(group)
    refs = [faces[0], faces[2]]
    mirrored = ImageOps.mirror(group)
    result = clip_face_similarity(dlib_backend, [f.embedding for f in refs], [mirrored, mirrored])
    frame = result.frames[0]
    assert len(frame.matches) == 2 and not frame.missing
    width = group.width
    for ref_index, ref in enumerate(refs):
        matched = result.detections[0][frame.face_of(ref_index)]
        # the matched face sits where the mirror put this person
        expected_center = width - (ref.box[0] + ref.box[2]) / 2
        assert abs((matched.box[0] + matched.box[2]) / 2 - expected_center) < ref.box[2] - ref.box[0]
    assert result.summary.face_sim == pytest.approx(min(frame.matches, key=lambda m: m.similarity).similarity)
    assert len(result.matched_embeddings(1)) == 2


def test_frame_without_faces_scores_zero(dlib_backend, astronaut_png):
    astronaut = Image.open(astronaut_png).convert("RGB")
    ref = reference_face(dlib_backend, astronaut).embedding
    blank = Image.new("RGB", (128, 96), (90, 120, 200))
    result = clip_face_similarity(dlib_backend, [ref], [blank, astronaut])
    assert result.summary.frames == 2 and result.summary.frames_with_faces == 1
    assert result.summary.frames_missing == (1,)
    assert result.summary.face_sim == pytest.approx(0.5, abs=1e-6)  # (0 + 1) / 2: the person must be there


def test_reference_without_face_is_a_user_error(dlib_backend):
    with pytest.raises(IngredientsError, match="no face found"):
        reference_face(dlib_backend, Image.new("RGB", (64, 64), (0, 0, 0)))


def test_reference_retries_on_padded_tight_crop(dlib_backend, astronaut_png):
    astronaut = Image.open(astronaut_png).convert("RGB")
    face = reference_face(dlib_backend, astronaut)
    left, top, right, bottom = (round(v) for v in face.box)
    tight = astronaut.crop((left + 4, top + 4, right - 4, bottom - 4))
    found = reference_face(dlib_backend, tight)
    assert dlib_backend.similarity(found.embedding, face.embedding) > 0.6


def test_backend_selection(tmp_path):
    assert load_face_backend("auto", None).name == "dlib"
    assert load_face_backend("auto", tmp_path).name == "dlib"
    assert load_face_backend("dlib").offline_fallback
    assert not arcface_available(tmp_path)
    with pytest.raises(IngredientsError, match=r"glintr100.onnx") as err:
        load_face_backend("arcface", tmp_path)
    assert "--backend dlib" in err.value.hint
    with pytest.raises(IngredientsError, match="unknown face backend"):
        load_face_backend("facenet", tmp_path)


def test_arcface_backend_finds_released_layout_and_names_missing_detector(tmp_path):
    from ingredients_model.metrics import face_similarity as fs

    folder = tmp_path / "face_encoder" / "models" / "antelopev2"
    folder.mkdir(parents=True)
    (folder / fs.ARCFACE_FILE).write_bytes(b"onnx")
    assert fs.find_antelopev2_file(tmp_path / "face_encoder", fs.ARCFACE_FILE) == (folder / fs.ARCFACE_FILE)
    assert not fs.arcface_available(tmp_path / "face_encoder")
    with pytest.raises(IngredientsError, match=r"scrfd_10g_bnkps.onnx"):
        fs.ArcFaceBackend(tmp_path / "face_encoder")


def test_arcface_backend_with_insightface_recognizer(tmp_path, t1_jpg):
    """The ArcFace glue on the real insightface ArcFaceONNX (a random 112x112 -> 512 ONNX graph)."""
    from insightface.model_zoo import get_model

    from ingredients_model.metrics.face_similarity import ArcFaceBackend

    path = write_tiny_arcface_onnx(tmp_path / "glintr100.onnx")
    recognizer = get_model(str(path), providers=["CPUExecutionProvider"])
    backend = ArcFaceBackend.from_models(DlibKeypointDetector(), recognizer)
    group = Image.open(t1_jpg).convert("RGB").crop((0, 100, 640, 520))
    faces = backend.detect(group)
    assert len(faces) == 3
    assert [f.box[0] for f in faces] == sorted(f.box[0] for f in faces)
    for face in faces:
        assert face.embedding.shape == (512,)
        assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
    result = clip_face_similarity(backend, [faces[2].embedding, faces[0].embedding], [group])
    assert [(m.ref, m.face) for m in result.frames[0].matches] == [(0, 2), (1, 0)]
    assert result.summary.face_sim == pytest.approx(1.0, abs=1e-5)


def test_curricularface_backend_aligns_and_embeds(t1_jpg):
    import torch

    from ingredients_model.metrics.curricularface import IRBackbone
    from ingredients_model.metrics.face_similarity import CurricularFaceBackend

    torch.manual_seed(0)
    net = IRBackbone(units=(1, 1, 1, 1), channels=(8, 8, 16, 16))
    backend = CurricularFaceBackend.from_models(DlibKeypointDetector(), net)
    group = Image.open(t1_jpg).convert("RGB").crop((0, 100, 640, 520))
    faces = backend.detect(group)
    assert len(faces) == 3 and all(f.embedding.shape == (512,) for f in faces)
    assert backend.similarity(faces[0].embedding, faces[0].embedding) == pytest.approx(1.0, abs=1e-5)
    assert backend.detect(Image.new("RGB", (64, 64))) == []
