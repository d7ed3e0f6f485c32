"""The schema of ``story.yaml``: pydantic models, their defaults and single-field rules.

Cross-field rules (paths on disk, cast names in shots, timing) live in :mod:`storyreel.story.checks`;
a new field goes here, and a new rule that looks at several fields goes there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ingredients_model import released
from ingredients_model.combine import Combine
from storyreel.colors import DEFAULT_COLORS, normalize_color
from storyreel.consent import Uses
from storyreel.engines import EngineName
from storyreel.errors import StoryreelError
from storyreel.formats import PRESETS, ReelFormat, format_label, parse_format, resolve_format
from storyreel.loudness import LOUDNESS_RANGE, TARGET_LUFS
from storyreel.names import MAX_LENGTH, NAME_RULE, cast_name_problem, normalize_name
from storyreel.step_cache import CacheSetting, cache_spec
from storyreel.story.prompts import placeholders, prompt_tokens, resolve_prompt
from storyreel.timeline import CaptionMode, TransitionType

if TYPE_CHECKING:
    from storyreel.cast_library import CastLibrary, LibraryMember
    from storyreel.story.problems import Problem

MODEL_FPS = released.FPS
"""Frame rate the Ingredients model generates at (``frames`` in a shot count at this rate)."""
MODEL_MAX_FRAMES = released.MAX_FRAMES
"""Frames per clip of the released model (about 6.1 s at :data:`MODEL_FPS`)."""

SHOT_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
_SHOT_ID_RE = re.compile(SHOT_ID_PATTERN)
_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")

CfgRouting = Literal[released.CFG_ROUTINGS]  # type: ignore[valid-type]
"""How the model injects faces under guidance: ``released`` or ``per_branch`` (see the README)."""
ModelFrames = Literal["native", "shot"]
"""``native``: the model always generates its trained frame count and the clip keeps the shot's frames;
``shot``: the model generates the shot's frame count (an expert option: positional embeddings it was not
trained for)."""
MODEL_FRAMES_DEFAULT: ModelFrames = "native"


def _invalid(message: str, hint: str | None = None, field: str | None = None) -> PydanticCustomError:
    """A pydantic error whose message, hint and (optional) sub-field survive into :class:`Problem`."""
    return PydanticCustomError("story", "{message}", {"message": message, "hint": hint, "field": field})


def _cast_name(value: str) -> str:
    """A cast name in NFC (see :mod:`storyreel.names`), or the problem with it."""
    name = normalize_name(value)
    problem = cast_name_problem(name)
    if problem:
        raise _invalid(
            f"bad cast name {value!r}: {problem}",
            f"use {NAME_RULE}; the name is used as {{name}} in prompts and as the folder cast/<name>/",
        )
    return name


CastName = Annotated[
    str,
    AfterValidator(_cast_name),
    WithJsonSchema({"type": "string", "maxLength": MAX_LENGTH, "description": f"Cast name: {NAME_RULE}"}),
]


def _check_cache(value: CacheSetting | None) -> CacheSetting | None:
    """A ``cache:`` setting checked by the model's own rules (see :mod:`storyreel.step_cache`)."""
    try:
        cache_spec(value)
    except StoryreelError as err:
        raise _invalid(err.message, err.hint) from None
    return value


CacheField = Annotated[CacheSetting | None, AfterValidator(_check_cache)]
_CACHE_HELP = (
    "Step cache: none, a kind (first_block, taylorseer) or {kind: ..., options}, e.g. "
    "{kind: first_block, threshold: 0.05}, {kind: taylorseer, cache_interval: 5}, "
    "{kind: mag, threshold: 0.06, mag_ratios: [...]}"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True)


class Transition(_Model):
    """How a shot passes into the next one (on the last shot: into the end of the reel)."""

    type: TransitionType = Field("cut", description="cut, crossfade or fade (through black)")
    seconds: float = Field(0.5, ge=0, le=10, description="Length of the transition in seconds")


DEFAULT_STORY_FILE = "story.yaml"
DEFAULT_REEL_FILE = "reel.mp4"


def default_reel_file(story_file: str) -> str:
    """The reel of a story that sets no ``output.file``: reel.mp4 for story.yaml, else <stem>.mp4, so
    that several stories in one project never write the same reel."""
    return DEFAULT_REEL_FILE if story_file == DEFAULT_STORY_FILE else f"{Path(story_file).stem}.mp4"


class FormatEntry(_Model):
    """One entry of ``output.formats`` written as a mapping, to name the reel's file."""

    format: str = Field(..., description="A ratio (9:16), a size (1080x1920) or a preset (tiktok)")
    file: str | None = Field(None, description="Reel file of this format (default: output.file + label)")


class Output(_Model):
    """Settings of the finished reel."""

    size: str = Field(
        "720x480",
        description="Size of the clips and of the reel, WIDTHxHEIGHT in pixels, e.g. 720x480 (even numbers)",
    )
    fps: int = Field(24, ge=1, le=120, description="Frame rate of the reel")
    file: str | None = Field(
        None,
        description="Reel file, relative to the project folder (.mp4 or .webm); default reel.mp4 for "
        "story.yaml, else the story file's name with .mp4",
    )
    formats: list[str | FormatEntry] | None = Field(
        None,
        description="One reel per entry from the same clips: ratios (16:9, 9:16, 1:1), sizes (1080x1920) "
        "or presets (instagram-reel, instagram-feed, tiktok, youtube, youtube-shorts)",
    )
    captions: CaptionMode = Field(
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

    @field_validator("formats")
    @classmethod
    def _check_formats(cls, value: list[str | FormatEntry] | None) -> list[str | FormatEntry] | None:
        if value is None:
            return None
        if not value:
            raise _invalid("no formats listed", "list at least one, e.g. [16:9, 9:16], or leave formats out")
        labels: dict[str, str] = {}
        for entry in value:
            text = entry.format if isinstance(entry, FormatEntry) else entry
            try:
                parse_format(text, 720, 480, 24)  # the base size only matters for ratios' pixels
            except ValueError as err:
                raise _invalid(
                    str(err),
                    "use a ratio such as 9:16, a size such as 1080x1920, or one of: " + ", ".join(PRESETS),
                ) from None
            label = format_label(text)
            if label in labels:
                raise _invalid(f"format {text!r} is listed twice (as {labels[label]!r})", "list it once")
            labels[label] = text
        return value

    @property
    def width(self) -> int:
        """Width of the clips (the preview's) and of the reel without ``formats``, in pixels."""
        return int(self.size.split("x")[0])

    @property
    def height(self) -> int:
        """Height of the clips (the preview's) and of the reel without ``formats``, in pixels."""
        return int(self.size.split("x")[1])

    @property
    def reel_file(self) -> str:
        """``file``, or the default reel file when the story was not loaded from a file."""
        return self.file or DEFAULT_REEL_FILE

    @property
    def reel_formats(self) -> list[ReelFormat]:
        """Every reel of the story: one per ``formats`` entry, or ``size`` at ``fps`` into ``file``."""
        if not self.formats:
            return [ReelFormat("", self.width, self.height, self.fps, self.reel_file)]
        base = (self.width, self.height, self.fps)
        return [
            resolve_format(e.format, e.file, self.reel_file, base)
            if isinstance(e, FormatEntry)
            else resolve_format(e, None, self.reel_file, base)
            for e in self.formats
        ]


class Defaults(_Model):
    """Values every shot uses unless it sets its own."""

    engine: EngineName = Field(
        "auto",
        description="auto (ingredients, else wan-vace, when its model folder and a GPU are present; else "
        "preview), ingredients, wan-vace or preview",
    )
    model: str | None = Field(
        None, description="Ingredients model folder, relative to the project folder (after loading: absolute)"
    )
    wan_model: str | None = Field(
        None, description="Wan VACE model folder, relative to the project folder (after loading: absolute)"
    )
    steps: int = Field(released.STEPS, ge=1, le=1000, description="Denoising steps")
    guidance: float | None = Field(
        None, ge=0, le=50, description="Classifier-free guidance scale (default: the engine's own)"
    )
    seed: int = Field(2025, ge=0, le=2**32 - 1, description="Story seed; shot seeds are derived from it")
    negative_prompt: str | None = Field(None, description="Negative prompt for every shot")
    seconds: float = Field(6.0, gt=0, le=600, description="Length of a shot in the reel, in seconds")
    router: Literal["soft", "hard"] = Field("soft", description="ID routing: soft (as released) or hard")
    cfg_routing: CfgRouting = Field(
        released.CFG_ROUTING,
        description="Faces under guidance: released (injected from the unconditional half into both halves, "
        "as the released code) or per_branch (each half routed with its own hidden states)",
    )
    model_frames: ModelFrames = Field(
        MODEL_FRAMES_DEFAULT,
        description="native: the model always generates its trained 49 frames and the clip keeps the shot's; "
        "shot (expert): the model generates the shot's frame count, which its weights were not trained for",
    )
    cache: CacheField = Field(None, description=_CACHE_HELP + " (default: no cache)")
    transition: Transition = Field(default_factory=Transition, description="Default transition between shots")


class CastMember(_Model):
    """One person: their photos (inside the project, or a cast library member's) and the words that
    replace ``{name}`` in prompts."""

    library: CastName | None = Field(
        None,
        description="Take this person from the cast library (the member's name there): photos, chosen faces "
        "and description come from it; description, face and combine here override",
    )
    photos: list[Path] = Field(
        default_factory=list,
        description="Photos of this person, relative to the project folder (after loading: absolute)",
    )
    description: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="Replaces {name} in prompts, e.g. 'a woman with short hair' (required unless library)",
    )
    face: int | None = Field(
        None, ge=1, le=64, description="Which face to use when a photo shows several (1-based, left to right)"
    )
    combine: Combine = Field(
        "mean",
        description="How several photos make one identity: mean (average face features), "
        "best (sharpest, largest face only) or first (first photo only)",
    )

    _library: LibraryMember | None = PrivateAttr(default=None)

    @property
    def from_library(self) -> LibraryMember | None:
        """The cast library member this person is (after loading), or None for the project's own."""
        return self._library


class Shot(_Model):
    """One clip of the reel."""

    id: str = Field(..., description="Unique id, used as the clip's file name: letters, digits, - and _")
    prompt: str = Field(..., min_length=1, max_length=4000, description="What happens; {name} names a person")
    cast: list[Annotated[str, AfterValidator(normalize_name)]] | None = Field(
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
    engine: EngineName | None = Field(None, description="Engine of this shot (default: defaults.engine)")
    cfg_routing: CfgRouting | None = Field(
        None, description="Faces under guidance: released or per_branch (default: defaults.cfg_routing)"
    )
    model_frames: ModelFrames | None = Field(
        None, description="native or shot (expert): see defaults.model_frames (default: that)"
    )
    cache: CacheField = Field(None, description=_CACHE_HELP + " (default: defaults.cache)")

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
            prompt_tokens(value)
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
        return resolve_prompt(self.prompt, lambda name: story.cast[name].description)


class Music(_Model):
    """Background music for the reel."""

    file: Path = Field(..., description="Audio file, relative to the project folder")
    volume: float = Field(1.0, ge=0, le=4, description="Volume factor (only without loudness)")
    loudness: float | None = Field(
        TARGET_LUFS,
        ge=LOUDNESS_RANGE[0],
        le=LOUDNESS_RANGE[1],
        description="Integrated loudness of the music in each reel, LUFS (EBU R128, two-pass loudnorm); "
        "null keeps the file's own level times volume",
    )
    fade_in: float = Field(1.0, ge=0, le=60, description="Fade-in seconds")
    fade_out: float = Field(2.0, ge=0, le=60, description="Fade-out seconds")


Color = Annotated[str, BeforeValidator(lambda v: _color(v), json_schema_input_type=str)]


def _color(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid(f"expected a colour in quotes, got {value!r}", 'write it like "#FFCC00" or white')
    try:
        return normalize_color(value)
    except ValueError as err:
        raise _invalid(str(err), 'quote hex colours: "#FFCC00"; #RRGGBBAA adds opacity') from None


LogoPosition = Literal["top-left", "top-right", "bottom-left", "bottom-right", "center"]


class Logo(_Model):
    """A logo or watermark drawn over every frame of every reel."""

    file: Path = Field(..., description="Image file (PNG with transparency works best), inside the project")
    position: LogoPosition = Field(
        "top-right", description="top-left, top-right, bottom-left, bottom-right, center"
    )
    opacity: float = Field(0.85, ge=0, le=1, description="0 (invisible) to 1 (opaque)")
    size: float = Field(
        0.16, gt=0, le=1, description="Width of the logo as a fraction of the reel's shorter side"
    )


class Colors(_Model):
    """Brand colours: #RRGGBB, #RRGGBBAA (AA = opacity) or a CSS name."""

    text: Color = Field(DEFAULT_COLORS["text"], description="Text on the title, end and call-to-action cards")
    background: Color = Field(DEFAULT_COLORS["background"], description="Background of the cards")
    accent: Color = Field(DEFAULT_COLORS["accent"], description="The call-to-action card's URL")
    caption: Color = Field(DEFAULT_COLORS["caption"], description="Caption text")
    caption_box: Color = Field(
        DEFAULT_COLORS["caption_box"], description="Box behind captions (#RRGGBBAA for opacity)"
    )


class EndCard(_Model):
    """A call-to-action card closing every reel."""

    text: str = Field(..., min_length=1, max_length=300, description="The call to action, e.g. Shop now")
    url: str | None = Field(None, max_length=300, description="Where to go, shown under the text")
    seconds: float = Field(3.0, gt=0, le=30, description="How long the card stays")


class Brand(_Model):
    """Brand finishing for every reel: logo, font, colours and a call-to-action card."""

    logo: Logo | None = Field(None, description="Logo or watermark over the video")
    font: Path | None = Field(None, description="TrueType/OpenType font for cards and captions")
    colors: Colors = Field(default_factory=Colors, description="Colours of cards and captions")
    end_card: EndCard | None = Field(None, description="Call-to-action card at the end of the reel")


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
    use: Uses = Field(
        default_factory=list,
        description="What the reel is for (e.g. advertising, social): each cast member's consent record "
        "must allow it",
    )
    output: _OrEmpty[Output] = Field(default_factory=Output, description="Reel settings")
    defaults: _OrEmpty[Defaults] = Field(
        default_factory=Defaults, description="Values shots use unless they set their own"
    )
    cast_library: str | None = Field(
        None,
        description="Cast library folder (may be outside the project; relative to the project folder; after "
        "loading: absolute); --cast-library overrides it, $STORYREEL_CAST is used when neither is set",
    )
    cast: _OrEmpty[dict[CastName, CastMember]] = Field(
        default_factory=dict, description=f"People, by name ({NAME_RULE})"
    )
    shots: list[Shot] = Field(..., min_length=1, description="The shots, in reel order")
    music: Music | None = Field(None, description="Optional background music")
    credits: str | None = Field(None, max_length=2000, description="Text of the end card")
    brand: Brand | None = Field(None, description="Logo, font, colours and call-to-action card")
    vars: _OrEmpty[dict[str, str | int | float | bool | None]] = Field(
        default_factory=dict,
        description="Text variables: ${name} in prompts, captions, title, credits, music and file names; "
        "--set name=value overrides them ($$ is a literal $)",
    )

    _path: Path | None = PrivateAttr(default=None)
    _warnings: list[Problem] = PrivateAttr(default_factory=list)
    _consent_warnings: list[Problem] = PrivateAttr(default_factory=list)
    _library: CastLibrary | None = PrivateAttr(default=None)
    _variables: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _fill(self, info: ValidationInfo) -> Story:
        context = (info.context or {}) if info else {}
        root = context.get("root")
        if self.output.file is None and context.get("story_file"):
            self.output.file = default_reel_file(context["story_file"])
        for shot in self.shots:
            if shot.seconds is None:
                shot.seconds = shot.frames / MODEL_FPS if shot.frames else self.defaults.seconds
            if shot.transition is None:
                shot.transition = self.defaults.transition.model_copy()
        if root is not None:
            root = Path(root)
            for member in self.cast.values():
                member.photos = [absolute_path(root, p) for p in member.photos]
            if self.music is not None:
                self.music.file = absolute_path(root, self.music.file)
            if self.defaults.model is not None:
                self.defaults.model = str(absolute_path(root, Path(self.defaults.model)))
            if self.defaults.wan_model is not None:
                self.defaults.wan_model = str(absolute_path(root, Path(self.defaults.wan_model)))
            if self.cast_library is not None:
                self.cast_library = str(absolute_path(root, Path(self.cast_library).expanduser()))
            if self.brand is not None:
                if self.brand.logo is not None:
                    self.brand.logo.file = absolute_path(root, self.brand.logo.file)
                if self.brand.font is not None:
                    self.brand.font = absolute_path(root, self.brand.font)
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
    def variables(self) -> dict[str, str]:
        """The variable values this story was loaded with (``vars:`` and ``--set``)."""
        return dict(self._variables)

    @property
    def warnings(self) -> list[Problem]:
        """Things that will work but may not look as intended (long shots, many people per shot, …)."""
        return self._warnings

    @property
    def consent_warnings(self) -> list[Problem]:
        """The warnings about cast members' consent (expired, no record): ``render`` shows them too."""
        return self._consent_warnings

    @property
    def library(self) -> CastLibrary | None:
        """The cast library in force when the story was loaded (``--cast-library``, ``cast_library`` or
        ``$STORYREEL_CAST``), or None."""
        return self._library

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


def absolute_path(root: Path, path: Path) -> Path:
    """``path`` relative to the project folder ``root`` (or absolute), normalised."""
    return Path(os.path.normpath(root / path))


def is_inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (relative to ``root``, or absolute) stays inside ``root`` (lexically: symlinks ok)."""
    full = absolute_path(root, path)
    return full == root or Path(os.path.normpath(root)) in full.parents
