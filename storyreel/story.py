"""The story format: pydantic models for ``story.yaml`` and a loader reporting problems at file:line:column.

:func:`load_story` reads the YAML with a position-keeping safe loader, validates it with pydantic and a set of
cross-field checks, and raises :class:`StoryValidationError` listing *all* problems found in one pass. Each
:class:`Problem` carries the location, the field path (``shots[2].cast[0]``), what was expected and a hint.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from storyreel.errors import Location, StoryreelError

__all__ = [
    "MODEL_FPS",
    "MODEL_MAX_FRAMES",
    "CastMember",
    "Defaults",
    "Music",
    "Output",
    "Problem",
    "Shot",
    "Story",
    "StoryValidationError",
    "Transition",
    "load_story",
    "parse_story",
    "placeholders",
    "story_json_schema",
]

MODEL_FPS = 8
"""Frame rate the Ingredients model generates at."""
MODEL_MAX_FRAMES = 49
"""Frames per clip of the released model (about 6.1 s at :data:`MODEL_FPS`)."""
RELEASED_MAX_PEOPLE = 2
"""The released weights were trained with two people per clip."""

MAX_FILE_BYTES = 1_000_000
MAX_SHOTS = 1000
MAX_CAST = 100
MAX_NODES = 100_000
MAX_DEPTH = 32
MAX_PROBLEMS_SHOWN = 20

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".webm")
AUDIO_SUFFIXES = (".mp3", ".wav", ".m4a", ".aac", ".ogg", ".opus", ".flac")

NAME_PATTERN = r"^[a-z_][a-z0-9_-]*$"
SHOT_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
_WORD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_SHOT_ID_RE = re.compile(SHOT_ID_PATTERN)
_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
_PROMPT_TOKEN_RE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")

CastName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=64)]


def _invalid(message: str, hint: str | None = None, field: str | None = None) -> PydanticCustomError:
    """A pydantic error whose message, hint and (optional) sub-field survive into :class:`Problem`."""
    return PydanticCustomError("story", "{message}", {"message": message, "hint": hint, "field": field})


# ----------------------------------------------------------------------------------------------------
# Prompt placeholders


def _prompt_tokens(prompt: str) -> list[tuple[str, str, int]]:
    """Split a prompt into ("text", s, pos) and ("name", name, pos) tokens; ValueError on a stray brace."""
    tokens: list[tuple[str, str, int]] = []
    last = 0
    for match in _PROMPT_TOKEN_RE.finditer(prompt):
        if match.start() > last:
            tokens.append(("text", prompt[last : match.start()], last))
        whole, name = match.group(0), match.group(1)
        if whole in ("{{", "}}"):
            tokens.append(("text", whole[0], match.start()))
        elif name is None:
            raise ValueError(f"stray '{whole}' at character {match.start() + 1}")
        elif not _WORD_RE.match(name.strip()):
            raise ValueError(f"'{whole}' at character {match.start() + 1} is not a cast name placeholder")
        else:
            tokens.append(("name", name.strip(), match.start()))
        last = match.end()
    if last < len(prompt):
        tokens.append(("text", prompt[last:], last))
    return tokens


def placeholders(prompt: str) -> list[str]:
    """Cast names used as ``{name}`` in ``prompt``, in order of first use (``{{``/``}}``: literal braces)."""
    names: list[str] = []
    for kind, value, _ in _prompt_tokens(prompt):
        if kind == "name" and value not in names:
            names.append(value)
    return names


# ----------------------------------------------------------------------------------------------------
# Models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True)


class Transition(_Model):
    """How a shot passes into the next one (on the last shot: into the end of the reel)."""

    type: Literal["cut", "crossfade", "fade"] = Field(
        "cut", description="cut, crossfade or fade (through black)"
    )
    seconds: float = Field(0.5, ge=0, le=10, description="Length of the transition in seconds")


class Output(_Model):
    """Settings of the finished reel."""

    size: str = Field("720x480", description="Reel size WIDTHxHEIGHT in pixels, e.g. 720x480 (even numbers)")
    fps: int = Field(24, ge=1, le=120, description="Frame rate of the reel")
    file: str = Field("reel.mp4", description="Reel file, relative to the project folder (.mp4 or .webm)")
    captions: Literal["burn", "subtitles", "both", "none"] = Field(
        "both", description="burn captions into the picture, add a subtitle track, both, or none"
    )
    title_card: bool = Field(True, description="Open the reel with a title card showing the story title")

    @field_validator("size")
    @classmethod
    def _check_size(cls, value: str) -> str:
        match = _SIZE_RE.match(value)
        if not match:
            raise _invalid(f"bad size {value!r}: expected WIDTHxHEIGHT", "write it like 720x480")
        width, height = int(match.group(1)), int(match.group(2))
        if not (16 <= width <= 7680 and 16 <= height <= 4320) or width % 2 or height % 2:
            raise _invalid(
                f"bad size {value!r}: width and height must be even numbers from 16 to 7680x4320",
                "the model renders 720x480; common reel sizes are 720x480, 1280x720, 1920x1080",
            )
        return f"{width}x{height}"

    @property
    def width(self) -> int:
        """Reel width in pixels."""
        return int(self.size.split("x")[0])

    @property
    def height(self) -> int:
        """Reel height in pixels."""
        return int(self.size.split("x")[1])


class Defaults(_Model):
    """Values every shot uses unless it sets its own."""

    engine: Literal["auto", "ingredients", "preview"] = Field(
        "auto", description="auto (ingredients when a model and a GPU are present, else preview)"
    )
    model: str | None = Field(
        None, description="Model folder, relative to the project folder (after loading: absolute)"
    )
    steps: int = Field(50, ge=1, le=1000, description="Denoising steps")
    guidance: float = Field(6.0, ge=0, le=50, description="Classifier-free guidance scale")
    seed: int = Field(2025, ge=0, le=2**32 - 1, description="Story seed; shot seeds are derived from it")
    negative_prompt: str | None = Field(None, description="Negative prompt for every shot")
    seconds: float = Field(6.0, gt=0, le=600, description="Length of a shot in the reel, in seconds")
    router: Literal["soft", "hard"] = Field("soft", description="ID routing: soft (as released) or hard")
    transition: Transition = Field(default_factory=Transition, description="Default transition between shots")


class CastMember(_Model):
    """One person: their photos (inside the project) and the words that replace ``{name}`` in prompts."""

    photos: list[Path] = Field(
        default_factory=list,
        description="Photos of this person, relative to the project folder (after loading: absolute)",
    )
    description: str = Field(
        ...,
        min_length=1,
        max_length=500,
        description="Replaces {name} in prompts, e.g. 'a woman with short hair'",
    )
    face: int | None = Field(
        None, ge=1, le=64, description="Which face to use when a photo shows several (1-based, left to right)"
    )
    combine: Literal["mean", "best", "first"] = Field(
        "mean",
        description="How several photos make one identity: mean (average face features), "
        "best (sharpest, largest face only) or first (first photo only)",
    )


class Shot(_Model):
    """One clip of the reel."""

    id: str = Field(..., description="Unique id, used as the clip's file name: letters, digits, - and _")
    prompt: str = Field(..., min_length=1, max_length=4000, description="What happens; {name} names a person")
    cast: list[str] | None = Field(
        None, description="People on screen, left to right (default: the order of {name} in the prompt)"
    )
    seconds: float | None = Field(
        None, gt=0, le=600, description="Length in the reel (default: defaults.seconds); not with frames"
    )
    frames: int | None = Field(
        None, gt=0, le=10_000, description=f"Frames the model generates at {MODEL_FPS} fps; not with seconds"
    )
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="Seed (default: derived from the story seed)"
    )
    steps: int | None = Field(None, ge=1, le=1000, description="Denoising steps (default: defaults.steps)")
    guidance: float | None = Field(
        None, ge=0, le=50, description="Guidance scale (default: defaults.guidance)"
    )
    negative_prompt: str | None = Field(
        None, description="Negative prompt (default: defaults.negative_prompt)"
    )
    transition: Transition | None = Field(
        None, description="How this shot passes into the next (default: defaults.transition)"
    )
    caption: str | None = Field(None, max_length=500, description="Caption shown over this shot")

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _SHOT_ID_RE.match(value) or len(value) > 64:
            raise _invalid(
                f"bad shot id {value!r}: it names the clip file, so use only letters, digits, - and _ "
                "(at most 64)",
                f"for example id: {re.sub(r'[^A-Za-z0-9_-]+', '-', value).strip('-')[:64] or 'shot-1'}",
            )
        return value

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str) -> str:
        try:
            _prompt_tokens(value)
        except ValueError as err:
            raise _invalid(
                f"bad placeholder in prompt: {err}",
                "write {name} for a cast member, and {{ or }} for a literal brace",
            ) from None
        return value

    @model_validator(mode="after")
    def _resolve(self) -> Shot:
        if self.seconds is not None and self.frames is not None:
            raise _invalid("give either seconds or frames, not both", "remove one of them", field="frames")
        if self.cast is None:
            self.cast = placeholders(self.prompt)
        return self

    def resolved_prompt(self, story: Story) -> str:
        """The prompt with each ``{name}`` replaced by that person's description, ``{{``/``}}`` unescaped."""
        return "".join(
            story.cast[value].description if kind == "name" else value
            for kind, value, _ in _prompt_tokens(self.prompt)
        )


class Music(_Model):
    """Background music for the reel."""

    file: Path = Field(..., description="Audio file, relative to the project folder")
    volume: float = Field(1.0, ge=0, le=4, description="Volume factor")
    fade_in: float = Field(1.0, ge=0, le=60, description="Fade-in seconds")
    fade_out: float = Field(2.0, ge=0, le=60, description="Fade-out seconds")


def _none_to_empty(value: Any) -> Any:
    return {} if value is None else value


class _OrEmpty:
    """``_OrEmpty[T]``: a section that may be empty in YAML (``cast:`` with every entry commented out)."""

    def __class_getitem__(cls, item: Any) -> Any:
        return Annotated[item, BeforeValidator(_none_to_empty, json_schema_input_type=item | None)]


class Story(_Model):
    """A validated ``story.yaml``. Load it with :func:`load_story` (which sets :attr:`path` and checks files).

    After loading: photo, music and model paths are absolute; every shot has ``seconds``, ``cast`` and
    ``transition`` filled in (from ``frames``, the prompt's ``{name}`` order and ``defaults``).
    """

    title: str = Field(..., min_length=1, max_length=200, description="Title of the reel")
    output: _OrEmpty[Output] = Field(default_factory=Output, description="Reel settings")
    defaults: _OrEmpty[Defaults] = Field(
        default_factory=Defaults, description="Values shots use unless they set their own"
    )
    cast: _OrEmpty[dict[CastName, CastMember]] = Field(
        default_factory=dict, description="People, by name (letters, digits, - and _)"
    )
    shots: list[Shot] = Field(..., min_length=1, description="The shots, in reel order")
    music: Music | None = Field(None, description="Optional background music")
    credits: str | None = Field(None, max_length=2000, description="Text of the end card")

    _path: Path | None = PrivateAttr(default=None)
    _warnings: list[Problem] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _fill(self, info: ValidationInfo) -> Story:
        root = (info.context or {}).get("root") if info else None
        for shot in self.shots:
            if shot.seconds is None:
                shot.seconds = shot.frames / MODEL_FPS if shot.frames else self.defaults.seconds
            if shot.transition is None:
                shot.transition = self.defaults.transition.model_copy()
        if root is not None:
            root = Path(root)
            for member in self.cast.values():
                member.photos = [_absolute(root, p) for p in member.photos]
            if self.music is not None:
                self.music.file = _absolute(root, self.music.file)
            if self.defaults.model is not None:
                self.defaults.model = str(_absolute(root, Path(self.defaults.model)))
        return self

    @property
    def path(self) -> Path:
        """The story file (absolute)."""
        if self._path is None:
            raise StoryreelError(
                "this story was not loaded from a file", "use storyreel.story.load_story(path)"
            )
        return self._path

    @property
    def root(self) -> Path:
        """The project folder (the story file's folder)."""
        return self.path.parent

    @property
    def warnings(self) -> list[Problem]:
        """Things that will work but may not look as intended (long shots, many people per shot, …)."""
        return self._warnings

    @property
    def model_dir(self) -> Path | None:
        """``defaults.model`` as a path, or None."""
        return Path(self.defaults.model) if self.defaults.model else None


def story_json_schema() -> dict[str, Any]:
    """JSON Schema of ``story.yaml`` (for editor autocompletion)."""
    schema = Story.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "storyreel story.yaml"
    return schema


def _absolute(root: Path, path: Path) -> Path:
    return Path(os.path.normpath(root / path))


def _inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (relative to ``root``, or absolute) stays inside ``root`` (lexically: symlinks ok)."""
    full = _absolute(root, path)
    return full == root or Path(os.path.normpath(root)) in full.parents


# ----------------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class Problem:
    """One problem (or warning) in a story file."""

    file: Path
    line: int | None
    column: int | None
    path: str
    message: str
    hint: str | None = None

    @property
    def location(self) -> Location:
        """The :class:`~storyreel.errors.Location` of the problem."""
        return Location(self.file, self.line, self.column)

    def __str__(self) -> str:
        where = f"{self.location}: " + (f"{self.path}: " if self.path else "")
        return where + self.message + (f"\n    hint: {self.hint}" if self.hint else "")


class StoryValidationError(StoryreelError):
    """A story file has problems; :attr:`problems` lists all of them in file order."""

    def __init__(self, problems: list[Problem], file: Path):
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.column or 0))
        count = len(self.problems)
        lines = [f"{file}: {count} problem{'s' if count != 1 else ''}"]
        lines += [f"  {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN]]
        if count > MAX_PROBLEMS_SHOWN:
            lines.append(f"  … and {count - MAX_PROBLEMS_SHOWN} more")
        super().__init__("\n".join(lines), f"fix them and run `storyreel validate {file}` again")


def _path_str(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _WORD_RE.match(str(part)):
            text += f".{part}" if text else str(part)
        else:
            text += f"[{str(part)!r}]"
    return text


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


# ----------------------------------------------------------------------------------------------------
# YAML with positions


class _Limit(Exception):
    def __init__(self, message: str, mark: yaml.Mark | None, hint: str):
        super().__init__(message)
        self.message, self.mark, self.hint = message, mark, hint


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting and many nodes while composing (before anything is expanded)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        self._nodes += 1
        if self._depth > MAX_DEPTH:
            raise _Limit(
                f"nesting deeper than {MAX_DEPTH} levels",
                self.peek_event().start_mark,
                "a story is only a few levels deep",
            )
        if self._nodes > MAX_NODES:
            raise _Limit(f"more than {MAX_NODES} YAML nodes", self.peek_event().start_mark, "split the story")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _measure(root: Node) -> None:
    """Refuse alias bombs and recursive aliases: count nodes and depth as if every alias were expanded."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            visiting.discard(key)
            if size[key] > MAX_NODES or depth[key] > MAX_DEPTH:
                raise _Limit(
                    "aliases expand to too much data (more than "
                    f"{MAX_NODES} values or {MAX_DEPTH} levels): refusing an alias bomb",
                    node.start_mark,
                    "use anchors (&name) and aliases (*name) only for small shared blocks",
                )
            continue
        if key in size:
            continue
        if key in visiting:
            raise _Limit("recursive alias: a block contains itself", node.start_mark, "remove the *alias")
        visiting.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node) if id(kid) not in size)


class _Document:
    """A YAML document converted to plain Python data, remembering the nodes behind every field path."""

    def __init__(self, file: Path, text: str, loader: _Loader, root: MappingNode):
        self.file = file
        self.text = text
        self.loader = loader
        self.nodes: dict[tuple[Any, ...], tuple[Node | None, Node]] = {}
        self.problems: list[Problem] = []
        self.reported: set[tuple[Any, ...]] = set()
        self.data: dict[str, Any] = self.convert(root, (), None)

    def problem(
        self, loc: tuple[Any, ...], message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        """Record a problem at the node of ``loc`` (its key when ``key``; else the nearest known parent)."""
        self.problems.append(self.make(loc, message, hint, key=key))
        self.reported.add(loc)

    def make(
        self,
        loc: tuple[Any, ...],
        message: str,
        hint: str | None = None,
        *,
        key: bool = False,
        mark: Any = None,
    ) -> Problem:
        if mark is None:
            mark = self.mark(loc, key=key)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        return Problem(self.file, line, column, _path_str(loc), message, hint)

    def mark(self, loc: tuple[Any, ...], *, key: bool = False) -> yaml.Mark | None:
        for end in range(len(loc), -1, -1):
            found = self.nodes.get(tuple(loc[:end]))
            if found:
                key_node, value_node = found
                exact = end == len(loc)
                if (key or not exact) and key_node is not None:
                    return key_node.start_mark
                return value_node.start_mark
        return None

    def line(self, loc: tuple[Any, ...]) -> int | None:
        mark = self.mark(loc)
        return mark.line + 1 if mark else None

    def convert(self, node: Node, loc: tuple[Any, ...], key_node: Node | None) -> Any:
        self.nodes[loc] = (key_node, node)
        if isinstance(node, ScalarNode):
            if node.tag == _TIMESTAMP_TAG:
                return node.value
            try:
                return self.loader.construct_object(node)
            except Exception as err:  # any bad scalar (unknown tag, 5000-digit int, bad base64) is the user's
                reason = getattr(err, "problem", None) or str(err)
                self.problem(loc, f"cannot read this value: {reason}", "quote it to make it plain text")
                return None
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ_TAG:
                self.problem(loc, f"unsupported tag {node.tag}", "remove the !tag")
            return [self.convert(child, (*loc, i), None) for i, child in enumerate(node.value)]
        if node.tag != _MAP_TAG:
            self.problem(loc, f"unsupported tag {node.tag}", "remove the !tag")
        duplicates: set[int] = set()  # a key repeated in this mapping itself (merged keys may be overridden)
        first: dict[str, Node] = {}
        for k_node, _ in node.value:
            if isinstance(k_node, ScalarNode) and k_node.tag != _MERGE_TAG:
                if k_node.value in first:
                    duplicates.add(id(k_node))
                    line = first[k_node.value].start_mark.line + 1
                    message = f"duplicate key '{k_node.value}' (first at line {line})"
                    self.problems.append(
                        self.make((*loc, k_node.value), message, "keep only one", mark=k_node.start_mark)
                    )
                    self.reported.add((*loc, k_node.value))
                else:
                    first[k_node.value] = k_node
        try:
            self.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as err:
            self.problems.append(self.make(loc, f"bad merge key: {err.problem}", mark=err.problem_mark))
            self.reported.add(loc)
            return {}
        result: dict[str, Any] = {}
        for k_node, v_node in node.value:  # merged pairs first, then this mapping's own: the last one wins
            if not isinstance(k_node, ScalarNode):
                self.problems.append(
                    self.make(
                        loc, "a key must be a plain word, not a list or mapping", mark=k_node.start_mark
                    )
                )
                self.reported.add(loc)
                continue
            if id(k_node) in duplicates:
                continue
            name = k_node.value
            result[name] = self.convert(v_node, (*loc, name), k_node)
        return result


def _read_text(path: Path, shown: Path) -> str:
    if _is_dir(path):
        raise StoryreelError(f"{shown} is a folder, not a story file", f"use {shown / 'story.yaml'}")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # never more, whatever the file claims to be
    except FileNotFoundError:
        raise StoryreelError(
            f"story file not found: {shown}", "check the path, or run `storyreel init DIR`"
        ) from None
    except OSError as err:
        raise StoryreelError(f"cannot read {shown}: {err.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        message = f"the file is larger than {MAX_FILE_BYTES:,} bytes, the limit for a story"
        problem = Problem(shown, None, None, "", message, "is this really a story.yaml?")
        raise StoryValidationError([problem], shown)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise StoryValidationError(
            [
                Problem(
                    shown,
                    line,
                    column,
                    "",
                    f"not UTF-8 text (byte 0x{data[err.start]:02x})",
                    "save the file as UTF-8",
                )
            ],
            shown,
        ) from None


def _compose(text: str, shown: Path) -> _Document:
    def fail(message: str, mark: Any, hint: str | None) -> StoryValidationError:
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        return StoryValidationError([Problem(shown, line, column, "", message, hint)], shown)

    try:
        loader = _Loader(text)
        root = loader.get_single_node()
        if root is not None:
            _measure(root)
    except _Limit as err:
        raise fail(err.message, err.mark, err.hint) from None
    except yaml.MarkedYAMLError as err:
        message = " ".join(str(x) for x in (err.context, err.problem) if x) or "invalid YAML"
        raise fail(
            f"YAML syntax error: {message}",
            err.problem_mark or err.context_mark,
            "check indentation, colons and quotes around this line",
        ) from None
    except yaml.reader.ReaderError as err:
        before = text[: err.position]
        mark = yaml.Mark(
            str(shown), err.position, before.count("\n"), err.position - (before.rfind("\n") + 1), None, None
        )
        raise fail(
            f"control character #x{err.character:04x} is not allowed", mark, "the file may not be a text file"
        ) from None
    except yaml.YAMLError as err:
        raise fail(f"YAML error: {err}", None, None) from None
    if root is None:
        start = yaml.Mark(str(shown), 0, 0, 0, None, None)
        raise fail("the story is empty", start, "run `storyreel init DIR` for a commented template")
    if not isinstance(root, MappingNode):
        raise fail(
            "the top level must be a mapping (title:, cast:, shots: …)",
            root.start_mark,
            "run `storyreel init DIR` for a commented template",
        )
    return _Document(shown, text, loader, root)


# ----------------------------------------------------------------------------------------------------
# pydantic errors → problems


def _show(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (for listing its allowed keys)."""
    annotation: Any = Story
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return None
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation


_TYPE_MESSAGES = {
    "string_type": ("expected text", "put the text in quotes"),
    "int_type": ("expected a whole number", None),
    "int_parsing": ("expected a whole number", None),
    "int_from_float": ("expected a whole number", None),
    "float_type": ("expected a number", None),
    "float_parsing": ("expected a number", None),
    "finite_number": ("expected a finite number", None),
    "bool_type": ("expected true or false", None),
    "bool_parsing": ("expected true or false", None),
    "list_type": ("expected a list", "write one '- item' per line, or the items in square brackets"),
    "dict_type": ("expected a mapping of key: value lines", None),
    "model_type": ("expected a mapping of key: value lines", None),
    "model_attributes_type": ("expected a mapping of key: value lines", None),
    "path_type": ("expected a file path", None),
}


def _pydantic_problem(doc: _Document, error: dict[str, Any]) -> Problem | None:
    loc = tuple(error["loc"])
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    key = bool(loc) and loc[-1] == "[key]"
    if key:
        loc = loc[:-1]
    if kind == "story" and ctx.get("field"):
        loc = (*loc, ctx["field"])
    if any(loc[:end] in doc.reported for end in range(len(loc) + 1)):
        return None
    hint: str | None = None
    if kind == "story":
        message, hint = ctx["message"], ctx.get("hint")
    elif kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = list(model.model_fields) if model else []
        message = f"unknown key '{loc[-1]}'"
        hint = _did_you_mean(str(loc[-1]), allowed) + (
            "allowed here: " + ", ".join(allowed) if allowed else ""
        )
        key = True
    elif kind == "missing":
        message, hint = f"missing '{loc[-1]}'", f"add `{loc[-1]}: …` here"
        model = _model_at(loc[:-1])
        if model is not None and loc[-1] in model.model_fields:
            description = model.model_fields[str(loc[-1])].description
            hint = f"add `{loc[-1]}:` ({description})" if description else hint
    elif kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = re.findall(r"'([^']*)'", expected)
        message = f"expected {expected}, got {_show(value)}"
        hint = (_did_you_mean(str(value), choices) + "allowed: " + ", ".join(choices)) if choices else None
    elif kind == "string_pattern_mismatch" and key:
        message = f"bad cast name {_show(value)}: use lower-case letters, digits, - and _"
        hint = "start with a letter; the name is used as {name} in prompts and as the folder cast/<name>/"
    elif kind == "too_short" and loc == ("shots",):
        message, hint = "no shots", "add at least one shot under `shots:`"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        word = {
            "greater_than": "more than",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "less_than_equal": "at most",
        }[kind]
        bound = next(iter(ctx.values()), "?")
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        message = f"must be {word} {bound}, got {_show(value)}"
    elif kind == "string_too_short":
        message = "must not be empty"
    elif kind == "string_too_long":
        message = f"too long (at most {ctx.get('max_length')} characters)"
    elif kind in _TYPE_MESSAGES:
        expected, hint = _TYPE_MESSAGES[kind]
        message = f"{expected}, got {_show(value)}"
    else:
        message = f"{error['msg']}, got {_show(value)}"
    return doc.make(loc, message, hint, key=key)


# ----------------------------------------------------------------------------------------------------
# Cross-field checks


def _piece(model: type[_Model], raw: Any, root: Path) -> Any:
    """``raw`` validated as ``model`` or None (its errors were already reported by the full validation)."""
    try:
        return model.model_validate(raw if raw is not None else {}, context={"root": root})
    except ValidationError:
        return None


def _as_name(value: Any) -> str | None:
    """A raw id or name as pydantic will see it (numbers become strings), or None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


class _Checker:
    """Semantic checks across fields, on the raw data (type-guarded) and on the parts that validated."""

    def __init__(self, doc: _Document, root: Path):
        self.doc, self.root = doc, root
        self.data = doc.data
        self.warnings: list[Problem] = []
        cast = self.data.get("cast")
        self.cast: dict[str, Any] = cast if isinstance(cast, dict) else {}
        shots = self.data.get("shots")
        self.shots: list[Any] = shots if isinstance(shots, list) else []

    def warn(self, loc: tuple[Any, ...], message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.warnings.append(self.doc.make(loc, message, hint, key=key))

    def too_big(self) -> bool:
        """Report (and say) whether the story has absurdly many shots or cast members."""
        before = len(self.doc.problems)
        if len(self.shots) > MAX_SHOTS:
            message = f"{len(self.shots)} shots; at most {MAX_SHOTS} per story"
            self.doc.problem(("shots",), message, "split the story", key=True)
        if len(self.cast) > MAX_CAST:
            message = f"{len(self.cast)} cast members; at most {MAX_CAST}"
            self.doc.problem(("cast",), message, "split the story", key=True)
        return len(self.doc.problems) > before

    def run(self) -> list[Problem]:
        """Run every cross-field check; return the warnings."""
        self.check_paths()
        self.check_cast()
        self.check_shots()
        return self.warnings

    def inside(self, loc: tuple[Any, ...], value: Any, what: str, hint: str) -> Path | None:
        """The path at ``loc`` if it is a string inside the project; report it if it escapes."""
        if not isinstance(value, str):
            return None
        if not value.strip() or "\0" in value:
            self.doc.problem(loc, f"{what} {value!r} is not a valid path", hint)
            return None
        if not _inside(self.root, Path(value)):
            self.doc.problem(loc, f"{what} {value!r} is outside the project folder", hint)
            return None
        return _absolute(self.root, Path(value))

    def check_paths(self) -> None:
        output, defaults, music = (self.data.get(k) for k in ("output", "defaults", "music"))
        if isinstance(output, dict) and isinstance(output.get("file"), str):
            file = output["file"]
            hint = "write the reel inside the project, e.g. reel.mp4"
            if (
                self.inside(("output", "file"), file, "reel file", hint)
                and Path(file).suffix.lower() not in VIDEO_SUFFIXES
            ):
                self.doc.problem(("output", "file"), f"reel file {file!r} must end in .mp4 or .webm")
        if isinstance(defaults, dict):
            model = self.inside(
                ("defaults", "model"),
                defaults.get("model"),
                "model folder",
                "keep models inside the project (a symlink such as models/ingredients → /data/ingredients "
                "is fine), or leave `model` out and use `storyreel render --model DIR` or $STORYREEL_MODEL",
            )
            if model is not None and not _is_dir(model):
                self.warn(
                    ("defaults", "model"),
                    f"model folder {defaults['model']} does not exist (yet)",
                    f"get the weights with `storyreel models download {defaults['model']}`",
                )
        if isinstance(music, dict):
            path = self.inside(
                ("music", "file"), music.get("file"), "music file", "copy the music into the project"
            )
            if path is not None and not _is_file(path):
                self.doc.problem(
                    ("music", "file"), f"music file not found: {music['file']}", self.relative_hint()
                )
            elif path is not None and path.suffix.lower() not in AUDIO_SUFFIXES:
                self.warn(("music", "file"), f"{music['file']!r} does not look like an audio file")

    def relative_hint(self) -> str:
        return f"paths are relative to the folder of the story file ({self.root})"

    def check_cast(self) -> None:
        for name, member in self.cast.items():
            if not isinstance(member, dict):
                continue
            photos = member.get("photos")
            if "photos" not in member or photos == []:
                self.doc.problem(
                    ("cast", name),
                    f"no photos for '{name}'",
                    f"list them under `photos:`, e.g. cast/{name}/1.jpg "
                    f"(storyreel cast add PHOTO --name {name})",
                    key=True,
                )
            if not isinstance(photos, list):
                continue
            for index, photo in enumerate(photos):
                loc = ("cast", name, "photos", index)
                path = self.inside(
                    loc, photo, "photo", f"copy it into the project: storyreel cast add PHOTO --name {name}"
                )
                if path is None:
                    continue
                if _is_dir(path):
                    self.doc.problem(loc, f"photo {photo!r} is a folder", "list the photo files themselves")
                elif not _is_file(path):
                    self.doc.problem(loc, f"photo not found: {photo}", self.missing_hint(path))
                elif path.suffix.lower() not in PHOTO_SUFFIXES:
                    self.doc.problem(
                        loc, f"{photo!r} is not a photo", "use a " + ", ".join(PHOTO_SUFFIXES) + " file"
                    )

    def missing_hint(self, path: Path) -> str:
        hint = self.relative_hint()
        try:
            siblings = [p.name for p in path.parent.iterdir()] if _is_dir(path.parent) else []
        except OSError:
            siblings = []
        close = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.6)
        if close:
            return f"did you mean '{close[0]}'? " + hint
        return hint

    def unknown_name(self, loc: tuple[Any, ...], name: str, *, mark: Any = None) -> None:
        known = list(self.cast)
        hint = _did_you_mean(name, known) + (
            "known: " + ", ".join(known) if known else "the story has no cast: add it under `cast:`"
        )
        self.doc.problems.append(self.doc.make(loc, f"unknown cast member '{name}'", hint, mark=mark))
        self.doc.reported.add(loc)

    def placeholder_mark(self, loc: tuple[Any, ...], needle: str) -> Any:
        """The mark of ``needle`` inside the scalar at ``loc`` (falls back to the scalar's start)."""
        found = self.doc.nodes.get(loc)
        if found is None:
            return None
        node = found[1]
        text = self.doc.text
        pos = text.find(needle, node.start_mark.index, node.end_mark.index)
        if pos < 0:
            return node.start_mark
        line_start = text.rfind("\n", 0, pos) + 1
        return yaml.Mark("", pos, text.count("\n", 0, pos), pos - line_start, None, None)

    def check_shots(self) -> None:
        defaults = _piece(Defaults, self.data.get("defaults"), self.root)
        parsed: list[Shot | None] = []
        first_line: dict[str, tuple[int | None, str]] = {}
        used: set[str] = set()
        for index, raw in enumerate(self.shots):
            if not isinstance(raw, dict):
                parsed.append(None)
                continue
            known_keys = {k: v for k, v in raw.items() if k in Shot.model_fields}  # unknown keys: reported
            parsed.append(_piece(Shot, known_keys, self.root))
            shot_id = _as_name(raw.get("id"))
            if shot_id is not None:
                folded = shot_id.casefold()  # clip files must differ on case-insensitive disks too
                if folded in first_line:
                    line, first_id = first_line[folded]
                    also = (
                        "" if first_id == shot_id else f" as '{first_id}'; ids must differ in more than case"
                    )
                    self.doc.problem(
                        ("shots", index, "id"),
                        f"duplicate shot id '{shot_id}' (first used at line {line}{also})",
                        "every shot needs its own id: it names the clip file",
                    )
                else:
                    first_line[folded] = (self.doc.line(("shots", index, "id")), shot_id)
            used.update(self.check_shot_cast(index, raw))
        for name in self.cast:
            if name not in used and self.shots:
                self.warn(("cast", name), f"'{name}' appears in no shot", key=True)
        if defaults is not None:
            self.check_timing(parsed, defaults)

    def check_shot_cast(self, index: int, raw: dict[str, Any]) -> list[str]:
        prompt = raw.get("prompt")
        names: list[str] = []
        if isinstance(prompt, str):
            try:
                names = placeholders(prompt)
            except ValueError:
                names = []  # reported by the model validation
        for name in names:
            if name not in self.cast:
                loc = ("shots", index, "prompt")
                self.unknown_name(loc, name, mark=self.placeholder_mark(loc, "{" + name))
        cast = raw.get("cast")
        if not isinstance(cast, list):
            return names
        listed: list[str] = []
        for position, item in enumerate(cast):
            name = _as_name(item)
            if name is None:
                continue
            if name not in self.cast:
                self.unknown_name(("shots", index, "cast", position), name)
            elif name in listed:
                self.doc.problem(
                    ("shots", index, "cast", position), f"'{name}' is listed twice", "list each once"
                )
            listed.append(name)
        missing = [n for n in names if n in self.cast and n not in listed]
        if missing:
            self.doc.problem(
                ("shots", index, "cast"),
                "the prompt names "
                + ", ".join("{" + n + "}" for n in missing)
                + " but `cast` does not list "
                + ("them" if len(missing) > 1 else "that person"),
                "add them to `cast` (left to right on screen), or drop `cast` to use the prompt's order",
            )
        return listed

    def check_timing(self, shots: list[Shot | None], defaults: Defaults) -> None:
        """Warn about long shots and crowded shots; check that transitions fit in the shots they overlap.

        Transitions follow :mod:`storyreel.reel`: a crossfade or fade overlaps a shot with the next one;
        on the last shot a fade fades out to black and a crossfade is ignored.
        """
        limit = MODEL_MAX_FRAMES / MODEL_FPS
        lengths = [
            None
            if shot is None
            else shot.seconds or (shot.frames / MODEL_FPS if shot.frames else defaults.seconds)
            for shot in shots
        ]
        last = len(shots) - 1
        incoming = 0.0  # overlap with the previous shot's transition
        for index, shot in enumerate(shots):
            length = lengths[index]
            if shot is None or length is None:
                incoming = 0.0
                continue
            if length > limit + 1e-9:
                self.warn(
                    ("shots", index),
                    f"{length:g} s is longer than the model's {MODEL_MAX_FRAMES} frames at {MODEL_FPS} fps "
                    f"(≈{limit:.1f} s)",
                    "the clip will be time-stretched to fill it; split long moments into several shots",
                )
            if shot.cast and len(shot.cast) > RELEASED_MAX_PEOPLE:
                self.warn(
                    ("shots", index, "cast"),
                    f"{len(shot.cast)} people in one shot; the released weights were trained with "
                    f"{RELEASED_MAX_PEOPLE}",
                    "expect weaker likeness; two people per shot is the tested case",
                )
            transition = shot.transition or defaults.transition
            outgoing = transition.seconds if transition.type != "cut" and index < last else 0.0
            if transition.type == "crossfade" and index == last and shot.transition:
                self.warn(
                    ("shots", index, "transition"),
                    "a crossfade on the last shot has no next shot: it is ignored",
                    "use fade to fade the reel out to black",
                )
            if transition.type != "cut" and not (index == last and transition.type == "crossfade"):
                self.check_transition(
                    index, shot, transition, length, lengths[index + 1] if index < last else None
                )
            if incoming < length and outgoing < length and incoming + outgoing > length + 1e-9:
                self.doc.problem(
                    ("shots", index),
                    f"transitions in ({incoming:g} s) and out ({outgoing:g} s) overlap in this "
                    f"{length:g} s shot",
                    "shorten the transitions or lengthen the shot",
                )
            incoming = outgoing

    def check_transition(
        self, index: int, shot: Shot, transition: Transition, length: float, following: float | None
    ) -> None:
        loc = ("shots", index, "transition", "seconds") if shot.transition else ("shots", index)
        origin = "" if shot.transition else " (from defaults.transition)"
        what = f"{transition.type} of {transition.seconds:g} s{origin}"
        if transition.seconds >= length:
            self.doc.problem(
                loc,
                f"{what} is not shorter than the shot ({length:g} s)",
                "shorten the transition or lengthen the shot",
            )
        elif following is not None and transition.seconds >= following:
            self.doc.problem(
                loc,
                f"{what} is not shorter than the next shot ({following:g} s)",
                "shorten the transition or lengthen the next shot",
            )


# ----------------------------------------------------------------------------------------------------
# Entry points


def parse_story(text: str, path: Path) -> Story:
    """Validate story ``text`` as if read from ``path`` (relative paths resolve against its folder)."""
    shown = Path(path)
    absolute = Path(os.path.normpath(shown.absolute()))
    root = absolute.parent
    doc = _compose(text, shown)
    checker = _Checker(doc, root)
    if checker.too_big():
        raise StoryValidationError(doc.problems, shown)
    story: Story | None = None
    try:
        story = Story.model_validate(doc.data, context={"root": root})
    except ValidationError as err:
        for error in err.errors(include_url=False):
            problem = _pydantic_problem(doc, error)
            if problem is not None:
                doc.problems.append(problem)
    warnings = checker.run()
    if doc.problems or story is None:
        raise StoryValidationError(doc.problems, shown)
    story._path = absolute
    story._warnings = sorted(warnings, key=lambda p: (p.line or 0, p.column or 0))
    return story


def load_story(path: Path) -> Story:
    """Load and validate a story file (or a project folder's ``story.yaml``).

    Raises :class:`StoryValidationError` listing every problem, each at file:line:column with a hint.
    """
    path = Path(path)
    if _is_dir(path) and _is_file(path / "story.yaml"):
        path = path / "story.yaml"
    return parse_story(_read_text(path, path), path)
