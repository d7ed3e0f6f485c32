"""What travels with a shot and how a worker stages it (no Ray needed: a stand-in shipper keeps the bytes)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storyreel.cast import add_cast_member, photo_files
from storyreel.cluster.files import (
    CACHE,
    CAST_CACHES,
    STAGE_PREFIX,
    Shipped,
    Stage,
    driver_path,
    project_location,
    travel_job,
)
from storyreel.errors import StoryreelError
from storyreel.plan import plan_story
from storyreel.project import Project, init_project
from storyreel.story import load_story
from tests.helpers.projects import make_library, make_project


class _Shipper:
    """Keeps each file's bytes (what :class:`~storyreel.cluster.files.Shipper` puts in the object store)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def ship_file(self, path: Path) -> Shipped:
        data = Path(path).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        self.data[sha] = data
        return Shipped(sha, sha)


def test_a_photo_travels_with_its_cast_add_record_and_crop(tmp_path: Path, astronaut_png: Path) -> None:
    project = init_project(tmp_path / "p")
    add_cast_member(project, "eileen", [astronaut_png])
    photo = project.cast_dir / "eileen" / astronaut_png.name
    files = photo_files(photo)
    assert [p.relative_to(photo.parent).as_posix() for p in files] == [
        astronaut_png.name,
        "faces.json",
        f"crops/{photo.stem}.png",
    ]
    assert photo_files(astronaut_png) == [astronaut_png]  # no record: the photo alone


def test_a_travelling_job_keeps_its_key_and_lands_in_the_stage(tmp_path_factory, tmp_path: Path) -> None:
    story = load_story(make_project(tmp_path_factory, tmp_path / "p", shots=1))
    from storyreel.engines.preview import PreviewEngine

    (job,) = plan_story(story, PreviewEngine().spec())
    shipper = _Shipper()
    travel, files = travel_job(job, shipper)
    assert travel.compute_key() == job.key == travel.key  # photo paths are not in the key
    assert all(not p.is_absolute() and p.parts[0] == "photos" for ps in travel.photos.values() for p in ps)
    assert set(files) == {p.as_posix() for ps in travel.photos.values() for p in ps}

    stage = Stage(tmp_path / "tmp")
    for staged, item in files.items():  # what Stage.receive does with the object store's bytes
        stage.path(staged).parent.mkdir(parents=True, exist_ok=True)
        stage.path(staged).write_bytes(shipper.data[item.ref])
    local = stage.job(travel)
    for name in job.cast:
        assert [p.read_bytes() for p in local.photos[name]] == [p.read_bytes() for p in job.photos[name]]
    with pytest.raises(ValueError):
        stage.path("../escape")
    first = stage.project(project_location(Project.from_story(story)))
    other = stage.project("projects/other")
    assert first.cache_dir.resolve() == other.cache_dir.resolve() == stage.path(CACHE)  # shared entries
    stage.close()
    assert not stage.root.exists()


def test_staging_folders_of_dead_workers_are_removed(tmp_path: Path) -> None:
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)  # fmt: skip
    (tmp_path / f"{STAGE_PREFIX}{dead}-abc").mkdir()
    (tmp_path / f"{STAGE_PREFIX}{os.getpid()}-live").mkdir()
    stage = Stage(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert f"{STAGE_PREFIX}{dead}-abc" not in names and f"{STAGE_PREFIX}{os.getpid()}-live" in names
    assert stage.root.name in names


def test_library_caches_travel_and_map_back(tmp_path_factory, tmp_path: Path) -> None:
    from storyreel.engines.preview import PreviewEngine

    library = make_library(tmp_path_factory, tmp_path / "library")
    path = make_project(tmp_path_factory, tmp_path / "p", shots=1, from_library=("nora",))
    story = load_story(path, cast_library=library)
    project = Project.from_story(story)
    (job,) = plan_story(story, PreviewEngine().spec())
    home = library / ".storyreel" / "cache"
    assert job.cast_caches == {"nora": home}
    travel, files = travel_job(job, _Shipper())
    (staged,) = travel.cast_caches.values()
    assert staged.parts[0] == CAST_CACHES and not staged.is_absolute()
    assert travel.compute_key() == job.key
    assert sorted(name.rsplit("/", 1)[-1] for name in files) == ["1.jpg", "1.jpg", "1.png", "faces.json"]

    stage = Stage(tmp_path / "tmp")
    here = stage.job(travel)
    entry = here.cast_caches["nora"] / "identities" / "ab" / "abc.json"  # a file the engine names for nora
    local = stage.project(project_location(project))
    name = stage.name(entry, local)
    assert name == f"{staged.as_posix()}/identities/ab/abc.json"
    assert driver_path(name, job, project) == home / "identities" / "ab" / "abc.json"
    sam = stage.name(local.identity_cache_dir / "cd" / "cde.json", local)
    assert sam == f"{CACHE}/identities/cd/cde.json"
    assert driver_path(sam, job, project) == project.cache_dir / "identities" / "cd" / "cde.json"
    for bad in (f"{CACHE}/../../escape", f"{CAST_CACHES}/0000/x.json", "photos/x.jpg", CACHE):
        with pytest.raises(StoryreelError, match="outside the cache folders"):
            driver_path(bad, job, project)
    with pytest.raises(ValueError):
        stage.name(tmp_path / "elsewhere.json", local)
    stage.close()
