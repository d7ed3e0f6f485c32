"""The files a shot reads, shipped from the driver to Ray workers through the object store.

A job names its photos by path on the driver. For the trip, :func:`travel_job` rewrites them to paths
relative to a worker's staging folder (``photos/<folder digest>/<name>``, with the ``cast add`` records
next to them: :func:`storyreel.cast.photo_files`) and a project's cache entries go to
``cache/<path in the project's cache folder>`` (entries are content-addressed, so projects share them).
People cached elsewhere (cast library members: ``job.cast_caches``) get ``cast-caches/<folder digest>/``
instead; :func:`driver_path` maps a staged cache file back to the
driver's. Photo and cache paths are not part of the job key, so the travelling job renders to the same
key. :class:`Shipper` puts each file's bytes into the object store once (by content); :class:`Stage`
writes them into a worker's private folder once each.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storyreel.cast import photo_files
from storyreel.errors import StoryreelError
from storyreel.fsutil import atomic_write_bytes
from storyreel.plan import RenderJob
from storyreel.project import Project

__all__ = [
    "CACHE",
    "CAST_CACHES",
    "STAGE_PREFIX",
    "Files",
    "Shipped",
    "Shipper",
    "Stage",
    "driver_path",
    "project_location",
    "travel_job",
]

STAGE_PREFIX = "storyreel-ray-"
"""Workers stage files in ``$TMPDIR/storyreel-ray-<pid>-<random>/``."""
CACHE = "cache"
"""The staged cache folder every staged project uses as its ``.storyreel/cache``."""
CAST_CACHES = "cast-caches"
"""Staged cache folders of people cached outside their project (``job.cast_caches``)."""


@dataclass(frozen=True)
class Shipped:
    """One file's bytes in the object store."""

    sha256: str
    ref: Any  # ray.ObjectRef


Files = dict[str, Shipped]
"""Staged path (relative to a worker's staging folder) → the file that goes there."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def project_location(project: Project) -> str:
    """Where a project's files go in a worker's staging folder."""
    return f"projects/{_digest(str(project.root.absolute()))}"


class Shipper:
    """Puts files into Ray's object store, each content once (driver side)."""

    def __init__(self) -> None:
        self.refs: dict[str, Any] = {}
        self.by_path: dict[Path, Shipped] = {}

    def ship_bytes(self, data: bytes) -> Shipped:
        import ray

        sha = hashlib.sha256(data).hexdigest()
        if sha not in self.refs:
            self.refs[sha] = ray.put(data)
        return Shipped(sha, self.refs[sha])

    def ship_file(self, path: Path) -> Shipped:
        path = Path(path).absolute()
        if path not in self.by_path:
            try:
                data = path.read_bytes()
            except OSError as err:
                raise StoryreelError(f"cannot read {path}: {err.strerror}", "check the file") from None
            self.by_path[path] = self.ship_bytes(data)
        return self.by_path[path]


def _staged_cache(folder: Path) -> str:
    return f"{CAST_CACHES}/{_digest(str(Path(folder).absolute()))}"


def travel_job(job: RenderJob, shipper: Shipper) -> tuple[RenderJob, Files]:
    """``job`` with its photos and cast caches as staged paths, and the files that go with it (photos
    and their records; cache entries are added once the engine has named them)."""
    files: Files = {}
    photos: dict[str, list[Path]] = {}
    for name, paths in job.photos.items():
        photos[name] = []
        for photo in paths:
            folder = f"photos/{_digest(str(Path(photo).parent.absolute()))}"
            for path in photo_files(photo):
                files[f"{folder}/{path.relative_to(photo.parent).as_posix()}"] = shipper.ship_file(path)
            photos[name].append(Path(folder) / Path(photo).name)
    caches = {name: Path(_staged_cache(path)) for name, path in job.cast_caches.items()}
    return job.model_copy(update={"photos": photos, "cast_caches": caches}), files


def driver_path(staged: str, job: RenderJob, project: Project) -> Path:
    """The driver's copy of a staged cache file: ``cache/<rel>`` is in the project's cache folder,
    ``cast-caches/<digest>/<rel>`` in that cast cache of ``job`` (the driver's job). Refuses any
    other name and any path that would leave its folder."""
    head, _, rel = staged.partition("/")
    home: Path | None = None
    if head == CACHE:
        home = project.cache_dir
    elif head == CAST_CACHES:
        digest, _, rel = rel.partition("/")
        homes = {_staged_cache(folder): Path(folder) for folder in job.cast_caches.values()}
        home = homes.get(f"{CAST_CACHES}/{digest}")
    path = home / rel if home is not None and rel else None
    if path is None or not path.resolve().is_relative_to(home.resolve()):
        raise StoryreelError(f"a worker named a cache file outside the cache folders: {staged}")
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Stage:
    """A worker's private folder holding the files its shots read (removed by :meth:`close`; folders of
    workers that were killed are removed by the next worker started on that machine)."""

    def __init__(self, base: Path | None = None):
        base = Path(base or tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        for old in base.glob(f"{STAGE_PREFIX}*"):
            match = re.match(rf"{STAGE_PREFIX}(\d+)-", old.name)
            if match and not _pid_alive(int(match.group(1))):
                shutil.rmtree(old, ignore_errors=True)
        self.root = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=base))
        self.staged: dict[str, str] = {}  # staged path → sha256 of what is there

    def path(self, staged: str) -> Path:
        """The absolute path of a staged path (never outside the staging folder)."""
        path = (self.root / staged).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"not a staged path: {staged!r}")
        return path

    def receive(self, files: Files) -> None:
        """Write the files not staged yet (fetched from the object store in one call)."""
        import ray

        todo = {staged: item for staged, item in files.items() if self.staged.get(staged) != item.sha256}
        if not todo:
            return
        for (staged, item), data in zip(todo.items(), ray.get([i.ref for i in todo.values()]), strict=True):
            atomic_write_bytes(self.path(staged), data)
            self.staged[staged] = item.sha256

    def read(self, staged: list[str]) -> dict[str, bytes]:
        """The bytes of those ``staged`` files that exist."""
        found = {}
        for name in staged:
            path = self.path(name)
            if path.is_file():
                found[name] = path.read_bytes()
        return found

    def job(self, job: RenderJob) -> RenderJob:
        """A travelling job with its photos and cast caches in this folder."""
        photos = {name: [self.path(str(p)) for p in paths] for name, paths in job.photos.items()}
        caches = {name: self.path(str(folder)) for name, folder in job.cast_caches.items()}
        return job.model_copy(update={"photos": photos, "cast_caches": caches})

    def name(self, path: Path, project: Project) -> str:
        """The staged name of a file in this folder (a cache file an engine named for ``project``, a staged
        project): ``cache/<rel>`` for the project's cache folder, else its path here."""
        path = Path(path)
        if path.is_relative_to(project.cache_dir):
            return f"{CACHE}/{path.relative_to(project.cache_dir).as_posix()}"
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise ValueError(f"not in the staging folder: {path}")
        return resolved.relative_to(self.root.resolve()).as_posix()

    def project(self, location: str) -> Project:
        """The staged stand-in of a project. Cache entries are content-addressed, so every staged project
        shares one cache folder: a person in several projects of a batch is encoded once."""
        root = self.path(location)
        project = Project(root=root, story_path=root / "story.yaml")
        if not project.cache_dir.exists():
            self.path(CACHE).mkdir(exist_ok=True)
            project.cache_dir.parent.mkdir(parents=True, exist_ok=True)
            project.cache_dir.symlink_to(self.path(CACHE), target_is_directory=True)
        return project

    def close(self) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)
