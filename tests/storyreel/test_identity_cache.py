"""storyreel.identity_cache: content addressing, verified hits, rebuilding damaged entries, combining."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageOps

from ingredients_model.face_tools import detect_faces
from ingredients_model.faces import TinyFaceEncoder, load_face_encoder, write_tiny_face_encoder
from ingredients_model.photos import load_photo
from storyreel.cast import SeveralFacesWarning, add_cast_member
from storyreel.errors import StoryreelError
from storyreel.identity_cache import IdentityCache, IdentityCacheWarning, combine_photos
from storyreel.project import Project
from storyreel.story import CastMember

DIMS = {"id_dim": 32, "vit_dim": 16, "vit_tokens": 9, "num_scales": 5}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> TinyFaceEncoder:
    folder = tmp_path_factory.mktemp("model") / "face_encoder"
    write_tiny_face_encoder(folder, **DIMS)
    return load_face_encoder(folder)


@pytest.fixture
def photo(astronaut_png: Path, tmp_path: Path) -> Path:
    path = tmp_path / "astronaut.png"
    path.write_bytes(astronaut_png.read_bytes())
    return path


def _entry_files(cache: IdentityCache) -> dict[str, Path]:
    return {p.suffix: p for p in cache.directory.glob("*/*") if p.is_file() and p.suffix != ".lock"}


def test_miss_then_verified_hit(encoder: TinyFaceEncoder, photo: Path, tmp_path: Path) -> None:
    cache = IdentityCache(tmp_path / "ids")
    start = time.perf_counter()
    built = cache.get_photo(photo, encoder)
    miss_time = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = cache.get_photo(photo, encoder)
    hit_time = time.perf_counter() - start
    print(f"identity cache: miss {miss_time:.3f}s, hit {hit_time:.3f}s")
    assert (built.hit, loaded.hit) == (False, True)
    assert (cache.misses, cache.hits) == (1, 1)
    assert hit_time < miss_time
    assert torch.equal(built.embedding.id_cond, loaded.embedding.id_cond)
    assert all(
        torch.equal(a, b)
        for a, b in zip(built.embedding.id_vit_hidden, loaded.embedding.id_vit_hidden, strict=True)
    )
    assert list(loaded.embedding.aligned_face.getdata()) == list(built.embedding.aligned_face.getdata())
    # fresh encoding gives the same values (float32 storage is exact)
    assert torch.equal(encoder.encode(Image.open(photo).convert("RGB")).id_cond, loaded.embedding.id_cond)
    files = _entry_files(cache)
    assert set(files) == {".json", ".png", ".safetensors"}
    meta = json.loads(files[".json"].read_text())
    assert meta["encoder_fingerprint"] == encoder.fingerprint
    assert meta["tensors"]["id_cond"] == {"shape": [32], "dtype": "torch.float32"}
    assert meta["tensors"]["id_vit_hidden.4"] == {"shape": [9, 16], "dtype": "torch.float32"}
    assert {"storyreel", "torch", "safetensors"} <= set(meta["versions"])
    assert not list(cache.directory.rglob("*.partial"))
    assert cache.has(meta["photo_sha256"]) and cache.has(meta["photo_sha256"], encoder.fingerprint)
    assert not cache.has(meta["photo_sha256"], "another-encoder")


def _damage_tensors(files: dict[str, Path]) -> None:
    data = bytearray(files[".safetensors"].read_bytes())
    data[-8:] = b"\xff" * 8
    files[".safetensors"].write_bytes(bytes(data))


def _truncate_metadata(files: dict[str, Path]) -> None:
    files[".json"].write_text(files[".json"].read_text()[:40])


def _damage_face(files: dict[str, Path]) -> None:
    files[".png"].write_bytes(b"\x89PNG broken")


def _stale_format(files: dict[str, Path]) -> None:
    meta = json.loads(files[".json"].read_text())
    meta["format"] = 0
    files[".json"].write_text(json.dumps(meta))


def _other_torch(files: dict[str, Path]) -> None:
    meta = json.loads(files[".json"].read_text())
    meta["versions"]["torch"] = "1.0.0"
    files[".json"].write_text(json.dumps(meta))


def _wrong_shape(files: dict[str, Path]) -> None:
    # a consistent-looking entry whose tensors do not match what the metadata promises
    from safetensors.torch import save

    data = save({"id_cond": torch.zeros(7)})
    files[".safetensors"].write_bytes(data)
    meta = json.loads(files[".json"].read_text())
    meta["tensor_sha256"] = hashlib.sha256(data).hexdigest()
    files[".json"].write_text(json.dumps(meta))


def _metadata_not_an_object(files: dict[str, Path]) -> None:
    files[".json"].write_text("[1]")  # valid JSON, but not what the cache writes


def _versions_not_an_object(files: dict[str, Path]) -> None:
    meta = json.loads(files[".json"].read_text())
    meta["versions"] = ["torch"]
    files[".json"].write_text(json.dumps(meta))


def _folder_instead_of(suffix: str):
    def damage(files: dict[str, Path]) -> None:
        files[suffix].unlink()
        (files[suffix] / "inside").mkdir(parents=True)

    return damage


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_metadata_not_an_object, "not an object"),
        (_versions_not_an_object, "unreadable"),
        (_folder_instead_of(".json"), "is a folder"),
        (_folder_instead_of(".safetensors"), "is a folder"),
        (_damage_tensors, "hash mismatch"),
        (_truncate_metadata, "unreadable"),
        (_damage_face, "aligned face hash"),
        (_stale_format, "stale"),
        (_other_torch, "stale \\(built with torch 1.0.0\\)"),
        (_wrong_shape, "inconsistent"),
    ],
)
def test_damaged_entry_is_rebuilt_with_a_warning(
    encoder: TinyFaceEncoder, photo: Path, tmp_path: Path, damage, reason: str
) -> None:
    cache = IdentityCache(tmp_path / "ids")
    reference = cache.get_photo(photo, encoder).embedding.id_cond
    damage(_entry_files(cache))
    with pytest.warns(IdentityCacheWarning, match=reason):
        rebuilt = cache.get_photo(photo, encoder)
    assert not rebuilt.hit and torch.equal(rebuilt.embedding.id_cond, reference)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get_photo(photo, encoder).hit


def test_key_follows_photo_bytes_face_choice_and_encoder(
    encoder: TinyFaceEncoder, photo: Path, t1_jpg: Path, tmp_path: Path
) -> None:
    cache = IdentityCache(tmp_path / "ids")
    cache.get_photo(photo, encoder)
    other_folder = tmp_path / "other" / "face_encoder"
    write_tiny_face_encoder(other_folder, **DIMS, seed=1)
    assert not cache.get_photo(photo, load_face_encoder(other_folder)).hit
    ImageOps.mirror(Image.open(photo)).save(photo)  # new bytes
    assert not cache.get_photo(photo, encoder).hit
    second = cache.get_photo(t1_jpg, encoder, face=2)
    fifth = cache.get_photo(t1_jpg, encoder, face=5)
    assert not second.hit and not fifth.hit
    assert not torch.equal(second.embedding.id_cond, fifth.embedding.id_cond)
    assert cache.get_photo(t1_jpg, encoder, face=2).hit
    assert len(list(cache.directory.glob("*/*.json"))) == 5


def test_chosen_face_of_a_group_photo_is_encoded(
    encoder: TinyFaceEncoder, t1_jpg: Path, tmp_path: Path
) -> None:
    from ingredients_model.face_tools import detect_faces, load_photo

    boxes = detect_faces(load_photo(t1_jpg))
    cache = IdentityCache(tmp_path / "ids")
    for face in (1, 4):
        encoded = cache.get_photo(t1_jpg, encoder, face=face).embedding.face_box
        cx, cy = (encoded[0] + encoded[2]) / 2, (encoded[1] + encoded[3]) / 2
        box = boxes[face - 1]
        assert box.left <= cx <= box.right and box.top <= cy <= box.bottom


def test_bfloat16_storage(encoder: TinyFaceEncoder, photo: Path, tmp_path: Path) -> None:
    cache = IdentityCache(tmp_path / "ids", dtype=torch.bfloat16)
    built = cache.get_photo(photo, encoder)
    loaded = cache.get_photo(photo, encoder)
    assert loaded.hit and loaded.embedding.id_cond.dtype == torch.float32
    assert torch.equal(built.embedding.id_cond, loaded.embedding.id_cond)
    exact = encoder.encode(Image.open(photo).convert("RGB")).id_cond
    assert torch.equal(loaded.embedding.id_cond, exact.to(torch.bfloat16).float())
    meta = json.loads(next(cache.directory.glob("*/*.json")).read_text())
    assert meta["dtype"] == "torch.bfloat16"


def test_several_photos_are_combined(encoder: TinyFaceEncoder, astronaut_png: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(astronaut_png.read_bytes())
    small = tmp_path / "small.png"
    Image.open(astronaut_png).resize((300, 300), Image.Resampling.LANCZOS).save(small)
    cache = IdentityCache(tmp_path / "ids")
    items = [cache.get_photo(small, encoder), cache.get_photo(big, encoder)]
    assert items[1].quality > items[0].quality  # larger face
    n = encoder.arcface_dim
    mean = combine_photos(items, "mean")
    arcs = torch.stack([torch.nn.functional.normalize(i.embedding.id_cond[:n], dim=0) for i in items]).mean(0)
    assert torch.allclose(mean.id_cond[:n], arcs / arcs.norm(), atol=1e-6)
    assert torch.equal(mean.id_cond[n:], items[1].embedding.id_cond[n:])
    assert mean.id_vit_hidden is items[1].embedding.id_vit_hidden
    assert combine_photos(items, "best") is items[1].embedding
    assert combine_photos(items, "first") is items[0].embedding
    member = CastMember(photos=[small, big], description="an astronaut")
    assert torch.equal(IdentityCache(tmp_path / "ids").get(member, encoder).id_cond, mean.id_cond)
    best = IdentityCache(tmp_path / "ids", combine="best").get(member, encoder)
    assert torch.equal(best.id_cond, items[1].embedding.id_cond)
    with pytest.raises(ValueError):
        IdentityCache(tmp_path / "ids", combine="median")


def test_cast_add_record_is_used(encoder: TinyFaceEncoder, t1_jpg: Path, tmp_path: Path) -> None:
    (tmp_path / "story.yaml").write_text("title: t\nshots: [{id: a, prompt: hi}]\n")
    project = Project.find(tmp_path)
    added = add_cast_member(project, "ana", [t1_jpg], face=3).photos[0]
    member = CastMember(
        photos=[project.cast_dir / "ana" / "t1.jpg"], description="x"
    )  # no face: in story.yaml
    cache = IdentityCache(project.identity_cache_dir)
    item = cache.get_photo(member.photos[0], encoder)
    cx = (item.embedding.face_box[0] + item.embedding.face_box[2]) / 2
    assert added.box.left <= cx <= added.box.right
    meta = json.loads(next(cache.directory.glob("*/*.json")).read_text())
    assert meta["face"] == 3 and meta["faces_found"] == 6


def test_photo_problems_are_user_errors(encoder: TinyFaceEncoder, t1_jpg: Path, tmp_path: Path) -> None:
    from skimage import data

    cache = IdentityCache(tmp_path / "ids")
    landscape = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(landscape)
    with pytest.raises(StoryreelError, match=r"no face found in .*coffee\.png"):
        cache.get_photo(landscape, encoder)
    with pytest.raises(StoryreelError, match="not found"):
        cache.get_photo(tmp_path / "missing.jpg", encoder)
    with pytest.raises(StoryreelError, match="face 7 was asked for"):
        cache.get_photo(t1_jpg, encoder, face=7)
    assert not list(cache.directory.rglob("*.json"))


def test_a_group_photo_without_a_choice_is_encoded_as_released(
    encoder: TinyFaceEncoder, t1_jpg: Path, tmp_path: Path
) -> None:
    """The whole photo goes to the encoder, whose own detector takes its highest-scoring face; a chosen
    face goes with its box instead."""
    cache = IdentityCache(tmp_path / "ids")
    with pytest.warns(SeveralFacesWarning, match="face 1 "):
        auto = cache.get_photo(t1_jpg, encoder)
    direct = encoder.encode(load_photo(t1_jpg))  # no choice: the encoder's own
    torch.testing.assert_close(auto.embedding.id_cond, direct.id_cond)
    chosen = cache.get_photo(t1_jpg, encoder, face=4)
    box = detect_faces(load_photo(t1_jpg))[3]
    boxed = encoder.encode(load_photo(t1_jpg), face_box=(box.left, box.top, box.right, box.bottom))
    torch.testing.assert_close(chosen.embedding.id_cond, boxed.id_cond)
    assert not torch.equal(chosen.embedding.id_cond, auto.embedding.id_cond)


def test_concurrent_builders_build_once(encoder: TinyFaceEncoder, photo: Path, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    caches = [IdentityCache(tmp_path / "ids") for _ in range(3)]  # like three render processes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda cache: cache.get_photo(photo, encoder), caches))
    assert sum(cache.misses for cache in caches) == 1 and sum(cache.hits for cache in caches) == 2
    assert all(torch.equal(r.embedding.id_cond, results[0].embedding.id_cond) for r in results)


def test_has_respects_the_chosen_face(encoder: TinyFaceEncoder, t1_jpg: Path, tmp_path: Path) -> None:
    from storyreel.cast import FaceChoice
    from storyreel.fsutil import file_sha256

    cache = IdentityCache(tmp_path / "ids")
    cache.get_photo(t1_jpg, encoder, face=2)
    sha = file_sha256(t1_jpg)
    assert cache.has(sha) and cache.has(sha, choice=FaceChoice(face=2))
    assert not cache.has(sha, choice=FaceChoice(face=5))
    assert cache.has(sha, encoder.fingerprint, choice=FaceChoice(face=2))
    assert not cache.has(sha, "another-encoder", choice=FaceChoice(face=2))
    next(cache.directory.glob("*/*.json")).write_text("[1]")  # damaged sidecars are skipped, not fatal
    assert not cache.has(sha)


def test_a_folder_in_place_of_the_entry_lock_is_replaced(
    encoder: TinyFaceEncoder, photo: Path, tmp_path: Path
) -> None:
    cache = IdentityCache(tmp_path / "ids")
    reference = cache.get_photo(photo, encoder)
    files = _entry_files(cache)
    lock = files[".json"].with_suffix(".lock")
    files[".json"].unlink()
    lock.unlink(missing_ok=True)
    (lock / "inside").mkdir(parents=True)
    rebuilt = cache.get_photo(photo, encoder)
    assert not rebuilt.hit and torch.equal(rebuilt.embedding.id_cond, reference.embedding.id_cond)
    assert lock.is_file()
