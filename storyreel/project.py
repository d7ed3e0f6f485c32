"""A project folder on disk, and `storyreel init`.

```
my-story/
  story.yaml
  cast/<name>/…          photos (``storyreel cast add``)
  renders/<id>.mp4|json  one clip per shot and its record; renders/index.html is the review page
  reel.mp4               (``output.file``)
  .storyreel/            caches, lock, logs: safe to delete
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from storyreel.errors import StoryreelError
from storyreel.fsutil import atomic_write_text, special_kind

if TYPE_CHECKING:
    from storyreel.story import Story

__all__ = ["IDENTITIES", "REFERENCES", "STORY_FILE", "Project", "init_project", "template_text"]

STORY_FILE = "story.yaml"
IDENTITIES = "identities"
"""The identity cache's folder in a cache folder (a project's ``.storyreel/cache/``, a cast library's)."""
REFERENCES = "references"
"""The reference-image cache's folder in a cache folder."""
_SHOT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def template_text(name: str) -> str:
    """The text of a file in ``storyreel/templates/``."""
    return resources.files("storyreel").joinpath("templates", name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Project:
    """The paths of a project folder (``reel_path`` follows ``output.file`` if made by :meth:`from_story`)."""

    root: Path
    story_path: Path
    reel_file: str = "reel.mp4"

    @classmethod
    def from_story(cls, story: Story) -> Project:
        """The project a loaded story belongs to (its folder)."""
        return cls(root=story.root, story_path=story.path, reel_file=story.output.file)

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
    def renders_dir(self) -> Path:
        """``renders/``: one clip and one JSON record per shot, and the review page."""
        return self.root / "renders"

    @property
    def state_dir(self) -> Path:
        """``.storyreel/``: caches, lock and logs (safe to delete)."""
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
        """``renders/index.html``: the review page."""
        return self.renders_dir / "index.html"

    @property
    def eval_path(self) -> Path:
        """``renders/eval.json``: the last ``storyreel eval`` (shown on the review page)."""
        return self.renders_dir / "eval.json"

    @property
    def cache_compare_path(self) -> Path:
        """``renders/cache_compare.json``: the last ``storyreel eval --compare-cache``."""
        return self.renders_dir / "cache_compare.json"

    def cache_compare_clip(self, shot_id: str, variant: str) -> Path:
        """``renders/cache-compare/<id>.<variant>.mp4``: a clip of ``storyreel eval --compare-cache``."""
        return self.renders_dir / "cache-compare" / f"{_checked_id(shot_id)}.{variant}.mp4"

    @property
    def reel_record_path(self) -> Path:
        """``.storyreel/reel.json``: what the reel was last assembled from (:mod:`storyreel.reel_record`)."""
        return self.state_dir / "reel.json"

    def clip_path(self, shot_id: str) -> Path:
        """``renders/<id>.mp4``."""
        return self.renders_dir / f"{_checked_id(shot_id)}.mp4"

    def clip_meta_path(self, shot_id: str) -> Path:
        """``renders/<id>.json``: the job, key, engine, versions and timings of a clip."""
        return self.renders_dir / f"{_checked_id(shot_id)}.json"

    def load_story(self, *, cast_library: Path | None = None) -> Story:
        """Load and validate this project's story file (``cast_library``: ``--cast-library``)."""
        from storyreel.story import load_story

        return load_story(self.story_path, cast_library=cast_library)


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
