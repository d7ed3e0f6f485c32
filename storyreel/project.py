"""A project folder on disk, and `storyreel init`.

```
my-story/
  story.yaml             (other story files may sit beside it: story_9x16.yaml, ad.yaml, …)
  cast/<name>/…          photos (``storyreel cast add``)
  renders/clips/<key>.mp4|json   every clip ever rendered, by job key: shared by all stories and variants
  renders/<id>.mp4|json  story.yaml's shots: links to its clips; renders/index.html is its review page
  renders/<reel>/…       the same for every other reel (output.file reel-shoes.mp4 → renders/reel-shoes/)
  reel.mp4               (``output.file``; with ``output.formats`` one file per format)
  .storyreel/            caches, lock, reel records: safe to delete
```

Each story and each ``--set`` variant has its own **view**: the folder with its shots' clips (hard
links into the clip store, so a clip is stored once however many stories use it), its review page,
thumbnails and eval results. ``story.yaml`` without variables has ``renders/`` itself, where earlier
versions kept every clip, so existing projects resume as they are and their clips join the store without
re-rendering. Any other story file, and any story with variables, has ``renders/<reel>/``, named after
its reel file (``output.file: reel-${product}.mp4`` → ``renders/reel-shoes/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from storyreel.errors import StoryreelError
from storyreel.fsutil import atomic_write_text, special_kind

if TYPE_CHECKING:
    from storyreel.story import Story

__all__ = ["IDENTITIES", "REFERENCES", "STORY_FILE", "Project", "init_project", "template_text", "view_name"]

STORY_FILE = "story.yaml"
IDENTITIES = "identities"
"""The identity cache's folder in a cache folder (a project's ``.storyreel/cache/``, a cast library's)."""
REFERENCES = "references"
"""The reference-image cache's folder in a cache folder."""
_SHOT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
CLIP_STORE = "clips"
CACHE_COMPARE = "cache-compare"
_RESERVED_VIEWS = (CLIP_STORE, "thumbs", CACHE_COMPARE)
"""Folders of ``renders/`` itself (story.yaml's view) that no other view may be named."""


def view_name(story: Story) -> str:
    """The view of a loaded story (see the module docstring): ``""`` (``renders/`` itself) for
    story.yaml without variables, else its reel file's path without the suffix, folders joined by ``-``
    (``out/reel-shoes.mp4`` → ``out-reel-shoes``)."""
    if story.path.name == STORY_FILE and not story.variables:
        return ""
    path = PurePosixPath(str(story.output.reel_file).replace("\\", "/"))
    name = "-".join(part for part in path.with_suffix("").parts if part not in ("", ".", "/"))
    return f"{name}-reel" if name in _RESERVED_VIEWS else name


def template_text(name: str) -> str:
    """The text of a file in ``storyreel/templates/``."""
    return resources.files("storyreel").joinpath("templates", name).read_text(encoding="utf-8")


class StateFolders:
    """The ``.storyreel/`` folder under ``root`` and its caches: a project's, and a cast library's (whose
    members' identities and reference crops are laid out as a project's)."""

    root: Path

    @property
    def state_dir(self) -> Path:
        """``.storyreel/``: caches, lock, logs and numbered face previews (safe to delete)."""
        return self.root / ".storyreel"

    @property
    def cache_dir(self) -> Path:
        """``.storyreel/cache/``."""
        return self.state_dir / "cache"

    @property
    def identity_cache_dir(self) -> Path:
        """``.storyreel/cache/identities/``: face-encoder outputs, content-addressed."""
        return self.cache_dir / IDENTITIES

    @property
    def reference_cache_dir(self) -> Path:
        """``.storyreel/cache/references/``: reference-image crops (wan-vace), content-addressed."""
        return self.cache_dir / REFERENCES


@dataclass(frozen=True)
class Project(StateFolders):
    """The paths of a project folder (``reel_path`` follows ``output.file`` if made by :meth:`from_story`)."""

    root: Path
    story_path: Path
    reel_file: str = "reel.mp4"
    view: str = ""
    """This story's folder under renders/ (see the module docstring); ``""`` is renders/ itself."""

    @classmethod
    def from_story(cls, story: Story) -> Project:
        """The project a loaded story belongs to (its folder)."""
        reel = story.output.reel_formats[0].file  # output.file, or its first format's file
        return cls(story.root, story.path, reel_file=reel, view=view_name(story))

    @classmethod
    def find(cls, path: Path) -> Project:
        """The project of ``path``: a story file, or a folder with a story.yaml (or inside such a folder)."""
        path = Path(path).absolute()
        if path.is_file():
            return cls(root=path.parent, story_path=path)
        if (kind := special_kind(path)) and kind != "a folder":
            raise StoryreelError(
                f"{path} is {kind}, not a story file", "give a story.yaml or a project folder"
            )
        if not path.exists():
            raise StoryreelError(f"{path} does not exist", "give a story.yaml or a project folder")
        for folder in (path, *path.parents):
            if (folder / STORY_FILE).is_file():
                return cls(root=folder, story_path=folder / STORY_FILE)
        raise StoryreelError(
            f"no {STORY_FILE} in {path} or its parent folders",
            f"create a project with `storyreel init {path}`",
        )

    @property
    def cast_dir(self) -> Path:
        """``cast/``: the photos of each cast member."""
        return self.root / "cast"

    @property
    def renders_root(self) -> Path:
        """``renders/``."""
        return self.root / "renders"

    @property
    def renders_dir(self) -> Path:
        """The view folder: this reel's clips (links into the store), review page, thumbnails, eval."""
        return self.renders_root / self.view if self.view else self.renders_root

    @property
    def clip_store_dir(self) -> Path:
        """``renders/clips/``: every clip by job key, shared by the project's stories and variants."""
        return self.renders_root / CLIP_STORE

    def stored_clip_path(self, key: str) -> Path:
        """``renders/clips/<key>.mp4``."""
        return self.clip_store_dir / f"{_checked_key(key)}.mp4"

    def stored_meta_path(self, key: str) -> Path:
        """``renders/clips/<key>.json``: the clip's job, engine, versions and timings."""
        return self.clip_store_dir / f"{_checked_key(key)}.json"

    @property
    def text_cache_dir(self) -> Path:
        """``.storyreel/cache/text/``: prompt embeddings."""
        return self.cache_dir / "text"

    @property
    def lock_path(self) -> Path:
        """``.storyreel/lock``: held while rendering."""
        return self.state_dir / "lock"

    @property
    def reel_path(self) -> Path:
        """The finished reel (``output.file``)."""
        return self.root / self.reel_file

    @property
    def review_path(self) -> Path:
        """``<view>/index.html``: the review page."""
        return self.renders_dir / "index.html"

    @property
    def eval_path(self) -> Path:
        """``<view>/eval.json``: the last ``storyreel eval`` (shown on the review page)."""
        return self.renders_dir / "eval.json"

    @property
    def cache_compare_path(self) -> Path:
        """``<view>/cache_compare.json``: the last ``storyreel eval --compare-cache``."""
        return self.renders_dir / "cache_compare.json"

    def cache_compare_clip(self, shot_id: str, variant: str) -> Path:
        """``<view>/cache-compare/<id>.<variant>.mp4``: a clip of ``storyreel eval --compare-cache``."""
        return self.renders_dir / CACHE_COMPARE / f"{_checked_id(shot_id)}.{variant}.mp4"

    @property
    def reel_record_path(self) -> Path:
        """``.storyreel/reel.json`` (``.storyreel/reels/<view>.json`` for other views): what the reels
        were last assembled from (:mod:`storyreel.reel_record`)."""
        return self.state_dir / "reels" / f"{self.view}.json" if self.view else self.state_dir / "reel.json"

    @property
    def framing_cache_dir(self) -> Path:
        """``.storyreel/cache/framing/``: the faces found in each clip, by job key (reframing)."""
        return self.cache_dir / "framing"

    def clip_path(self, shot_id: str) -> Path:
        """``<view>/<id>.mp4``: the shot's clip in this reel's view."""
        return self.renders_dir / f"{_checked_id(shot_id)}.mp4"

    def clip_meta_path(self, shot_id: str) -> Path:
        """``<view>/<id>.json``: the job, key, engine, versions and timings of the shot's clip."""
        return self.renders_dir / f"{_checked_id(shot_id)}.json"

    def load_story(self, *, cast_library: Path | None = None) -> Story:
        """Load and validate this project's story file (``cast_library``: ``--cast-library``)."""
        from storyreel.story import load_story

        return load_story(self.story_path, cast_library=cast_library)


def _checked_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise StoryreelError(f"bad job key {key!r}", "job keys are sha256 hex digests")
    return key


def _checked_id(shot_id: str) -> str:
    if not _SHOT_ID_RE.match(shot_id):
        raise StoryreelError(f"bad shot id {shot_id!r}", "shot ids use only letters, digits, - and _")
    return shot_id


def init_project(directory: Path, example: bool = False) -> Project:
    """Create a project in ``directory``: a commented ``story.yaml``, ``cast/`` and ``renders/``.

    With ``example``, write the example story instead, extract its cast photos from sample photos that
    installed packages ship (insightface, scikit-image) and record their faces (``cast/<name>/faces.json``,
    as ``storyreel cast add`` does). Never overwrites an existing ``story.yaml``.
    """
    root = Path(directory).absolute()
    story_path = root / STORY_FILE
    if root.exists() and not root.is_dir():
        raise StoryreelError(f"{directory} exists and is not a folder", "choose another name")
    if story_path.exists():
        raise StoryreelError(
            f"{story_path} already exists; not overwriting it",
            "choose a new folder, or delete story.yaml yourself if you really want to start over",
        )
    project = Project(root=root, story_path=story_path)
    text = template_text("example_story.yaml" if example else "story.yaml")
    try:
        project.cast_dir.mkdir(parents=True, exist_ok=True)
        project.renders_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoryreelError(
            f"cannot create {root}: {err.strerror}", "check the path and permissions"
        ) from None
    if example:
        from storyreel.example import write_example_photos

        write_example_photos(project.cast_dir)
    atomic_write_text(story_path, text)
    if example:  # register the cast as `storyreel cast add` would, so the cast commands know it
        from storyreel.cast import add_cast_member

        for name, member in project.load_story().cast.items():
            add_cast_member(project, name, member.photos, description=member.description)
    return project
