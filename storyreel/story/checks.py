"""Cross-field checks of a story: paths on disk, cast names in shots, shot ids, timing and crowding.

They run on the raw data (type-guarded, so a wrong type elsewhere never hides a problem here) and on the
parts that validated. Problems stop the load; warnings are kept on the story (``Story.warnings``).
A new rule that looks at several fields is one more method of :class:`Checker`, called from ``run``.
"""

from __future__ import annotations

import difflib
import functools
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError

from ingredients_model import released
from storyreel.cast_library import LIBRARY_HINT, resolve_cast_library
from storyreel.consent import CONSENT_FILE, USE_RE, ConsentError, as_uses, read_consent, today
from storyreel.errors import StoryreelError
from storyreel.ffmpeg_tools import audio_problem
from storyreel.fsutil import special_kind
from storyreel.names import cast_name_problem, normalize_name
from storyreel.story.positions import Document
from storyreel.story.problems import Problem, did_you_mean
from storyreel.story.prompts import placeholders
from storyreel.story.schema import (
    DEFAULT_REEL_FILE,
    CastMember,
    Defaults,
    FormatEntry,
    Output,
    Shot,
    absolute_path,
    is_inside,
)
from storyreel.timeline import Join, joins, room

if TYPE_CHECKING:
    from storyreel.cast_library import CastLibrary, LibraryMember

__all__ = ["Checker", "is_dir", "is_file"]

MAX_SHOTS = 1000
MAX_CAST = 100
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".webm")
AUDIO_SUFFIXES = (".mp3", ".wav", ".m4a", ".aac", ".ogg", ".opus", ".flac")
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
MOSTLY_FILL = 0.5
"""A format whose fallback (the whole clip fitted inside it) would leave more than this share of the
frame to bars or blurred fill is worth a warning."""


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not an image Pillow can open, or None. Cheap: ``Image.open`` reads the header only."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # loading the photo says so
            with Image.open(path) as image:
                image.size  # noqa: B018 (the header is parsed on open; the size proves it)
    except Image.DecompressionBombError:
        return None  # an image, too large: loading it says so
    except Exception as err:  # Pillow raises many types for files it cannot identify
        return "the file is empty" if path.stat().st_size == 0 else f"{type(err).__name__}: {err}"
    return None


def _readable(path: Path, check: Callable[[Path], str | None]) -> str | None:
    """``check(path)``, or what stopped the file from being read."""
    try:
        return check(path)
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"


def _piece(model: type[BaseModel], raw: Any, root: Path) -> Any:
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


def _is_font(path: Path) -> bool:
    from PIL import ImageFont

    try:
        ImageFont.truetype(str(path), 12)
    except (OSError, ValueError):
        return False
    return True


def is_file(path: Path) -> bool:
    """``path.is_file()``, False for paths the OS cannot even look at."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def is_dir(path: Path) -> bool:
    """``path.is_dir()``, False for paths the OS cannot even look at."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _fewer_frames(seconds: float) -> tuple[str, str]:
    """The warning for ``model_frames: shot`` on a shot of ``seconds`` shorter than the trained clip."""
    return (
        f"model_frames: shot makes the model generate {seconds:g} s, fewer than the {released.MAX_FRAMES} "
        "frames its positional embeddings were trained for",
        "the model then runs positional embeddings its weights never saw; the default, model_frames: native, "
        f"generates {released.MAX_FRAMES} frames and keeps the shot's (at the cost of a whole clip)",
    )


class Checker:
    """Semantic checks across fields, on the raw data (type-guarded) and on the parts that validated.

    ``cast_library`` is ``--cast-library`` (it wins over the story's ``cast_library:`` and
    ``$STORYREEL_CAST``). :attr:`library_members` maps each story name taken from the library to its member.
    """

    def __init__(
        self,
        doc: Document,
        root: Path,
        cast_library: Path | None = None,
        *,
        variables: Mapping[str, str] | None = None,
    ):
        self.doc, self.root = doc, root
        self.overrides = dict(variables or {})
        self.data = doc.data
        self.warnings: list[Problem] = []
        self.consent_warnings: list[Problem] = []
        cast = self.data.get("cast")
        self.cast: dict[str, Any] = cast if isinstance(cast, dict) else {}
        self.names = {normalize_name(str(name)): name for name in self.cast}  # NFC → as written
        shots = self.data.get("shots")
        self.shots: list[Any] = shots if isinstance(shots, list) else []
        raw_library = self.data.get("cast_library")
        self.library_option = cast_library is not None
        self.library: CastLibrary | None = resolve_cast_library(
            cast_library, raw_library if isinstance(raw_library, str) else None, root
        )
        self.library_members: dict[str, LibraryMember] = {}
        self.library_refs: dict[str, tuple[tuple[Any, ...], Any]] = {}  # story name → where it is used
        self.looked_up: dict[str, LibraryMember | StoryreelError] = {}

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
        self.check_brand()
        self.check_cast()
        self.check_shots()
        self.check_consent()
        self.check_formats()
        return self.warnings

    def inside(self, loc: tuple[Any, ...], value: Any, what: str, hint: str) -> Path | None:
        """The path at ``loc`` if it is a string inside the project; report it if it escapes."""
        if not isinstance(value, str):
            return None
        if not value.strip() or "\0" in value:
            self.doc.problem(loc, f"{what} {value!r} is not a valid path", hint)
            return None
        if not is_inside(self.root, Path(value)):
            self.doc.problem(loc, f"{what} {value!r} is outside the project folder", hint)
            return None
        return absolute_path(self.root, Path(value))

    def check_paths(self) -> None:
        output, defaults, music = (self.data.get(k) for k in ("output", "defaults", "music"))
        if isinstance(output, dict) and isinstance(output.get("file"), str):
            self.check_reel_file(("output", "file"), output["file"])
            if self.overrides and not self.raw_has_variable(("output", "file")):
                self.warn(
                    ("output", "file"),
                    "--set makes a variant, but output.file uses no variable: variants overwrite each "
                    "other's reel and review page",
                    "name the reel after a variable, e.g. file: reel-${product}.mp4",
                )
        elif self.overrides:
            self.warn(
                ("output",) if isinstance(output, dict) else (),
                "--set makes a variant, but the story sets no output.file: variants overwrite each "
                "other's reel and review page",
                "name the reel after a variable, e.g. output: {file: reel-${product}.mp4}",
            )
        formats = output.get("formats") if isinstance(output, dict) else None
        if isinstance(formats, list):
            for index, entry in enumerate(formats):
                if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                    self.check_reel_file(("output", "formats", index, "file"), entry["file"])
        if isinstance(defaults, dict):
            for field, option, env, name in (
                ("model", "--model", "$STORYREEL_MODEL", "ingredients"),
                ("wan_model", "--wan-model", "$STORYREEL_WAN_MODEL", "wan-vace-1.3b"),
            ):
                model = self.inside(
                    ("defaults", field),
                    defaults.get(field),
                    "model folder",
                    f"keep models inside the project (a symlink such as models/{name} → /data/{name} is "
                    f"fine), or leave `{field}` out and use `storyreel render {option} DIR` or {env}",
                )
                if model is not None and not is_dir(model):
                    download = "" if field == "model" else f"{name} "
                    self.warn(
                        ("defaults", field),
                        f"model folder {defaults[field]} does not exist (yet)",
                        f"get the weights with `storyreel models download {download}{defaults[field]}`",
                    )
        self.check_library_path()
        if isinstance(music, dict):
            path = self.inside(
                ("music", "file"), music.get("file"), "music file", "copy the music into the project"
            )
            loc, hint = ("music", "file"), "use an audio file ffmpeg can read (mp3, wav, m4a, ogg, flac)"
            if path is not None and (kind := special_kind(path)):
                self.doc.problem(loc, f"music file {music['file']!r} is {kind}, not an audio file", hint)
            elif path is not None and not is_file(path):
                self.doc.problem(loc, f"music file not found: {music['file']}", self.relative_hint())
            elif path is not None and (problem := _readable(path, audio_problem)):
                self.doc.problem(loc, f"music file {music['file']!r} is not audio: {problem}", hint)
            elif path is not None and path.suffix.lower() not in AUDIO_SUFFIXES:
                self.warn(loc, f"{music['file']!r} does not look like an audio file")
            if music.get("volume") not in (None, 1, 1.0) and music.get("loudness", 0) is not None:
                self.warn(
                    ("music", "volume"),
                    "volume has no effect while loudness normalises the music",
                    "set the level with loudness (LUFS), or write loudness: null to use volume",
                )

    def check_reel_file(self, loc: tuple[Any, ...], file: str) -> None:
        hint = "write the reel inside the project, e.g. reel.mp4"
        if self.inside(loc, file, "reel file", hint) and Path(file).suffix.lower() not in VIDEO_SUFFIXES:
            self.doc.problem(loc, f"reel file {file!r} must end in .mp4 or .webm")

    def raw_has_variable(self, loc: tuple[Any, ...]) -> bool:
        """Whether the YAML scalar at ``loc`` was written with a ``${variable}``."""
        found = self.doc.nodes.get(loc)
        return found is not None and "${" in str(getattr(found[1], "value", ""))

    def check_brand(self) -> None:
        """The logo is an image and the font a font file, both inside the project (special files are
        named, never opened)."""
        brand = self.data.get("brand")
        if not isinstance(brand, dict):
            return
        logo = brand.get("logo")
        if isinstance(logo, dict):
            loc = ("brand", "logo", "file")
            path = self.inside(loc, logo.get("file"), "logo", "copy the logo into the project, e.g. brand/")
            if path is not None and (kind := special_kind(path)):
                self.doc.problem(loc, f"logo {logo['file']!r} is {kind}, not an image", "use a PNG")
            elif path is not None and not is_file(path):
                self.doc.problem(loc, f"logo not found: {logo['file']}", self.missing_hint(path))
            elif path is not None and (problem := _readable(path, image_problem)):
                self.doc.problem(loc, f"logo {logo['file']!r} is not an image: {problem}", "use a PNG")
        loc = ("brand", "font")
        path = self.inside(loc, brand.get("font"), "font", "copy the font file into the project")
        hint = "use a .ttf or .otf file"
        if path is not None and (kind := special_kind(path)):
            self.doc.problem(loc, f"font {brand['font']!r} is {kind}, not a font file", hint)
        elif path is not None and not is_file(path):
            self.doc.problem(loc, f"font not found: {brand['font']}", self.missing_hint(path))
        elif path is not None and (path.suffix.lower() not in FONT_SUFFIXES or not _is_font(path)):
            self.doc.problem(loc, f"{brand['font']!r} is not a TrueType/OpenType font", hint)

    def check_formats(self) -> None:
        """Reel files of the formats differ; warn about formats that would mostly be bars or fill."""
        raw = self.data.get("output")
        output = _piece(Output, raw, self.root) if isinstance(raw, dict) else None
        if output is None or not output.formats:
            return
        if output.file is None:
            output.file = DEFAULT_REEL_FILE
        seen: dict[str, int] = {}
        for index, (entry, fmt) in enumerate(zip(output.formats, output.reel_formats, strict=True)):
            loc = ("output", "formats", index)
            if fmt.file in seen:
                where = "file" if isinstance(entry, FormatEntry) and entry.file else None
                self.doc.problem(
                    (*loc, where) if where else loc,
                    f"formats {seen[fmt.file] + 1} and {index + 1} both write {fmt.file}",
                    "give one of them its own file:",
                )
            seen.setdefault(fmt.file, index)
            shown = fmt.width * output.height / (fmt.height * output.width)
            visible = min(shown, 1 / shown)  # share of the format a whole clip fills when fitted inside
            crowded = [
                raw_shot.get("id")
                for raw_shot in self.shots
                if isinstance(raw_shot, dict) and len(self.shot_people(raw_shot)) > 1
            ]
            if 1 - visible > MOSTLY_FILL and crowded:
                self.warn(
                    loc,
                    f"format {fmt.name} ({fmt.size}) shows {visible:.0%} of a {output.size} clip's "
                    f"{'width' if shown < 1 else 'height'}: where several people do not fit in its crop "
                    f"(likely in {', '.join(map(str, crowded[:5]))}{' …' if len(crowded) > 5 else ''}), "
                    f"{1 - visible:.0%} of the frame becomes blurred fill",
                    "stage those shots with the people close together, or render the clips in this "
                    "orientation (output.size)",
                )

    def shot_people(self, raw: dict[str, Any]) -> list[str]:
        cast = raw.get("cast")
        if isinstance(cast, list):
            return [str(c) for c in cast]
        prompt = raw.get("prompt")
        try:
            return placeholders(prompt) if isinstance(prompt, str) else []
        except ValueError:
            return []

    def check_library_path(self) -> None:
        """``cast_library:`` may name a folder outside the project (the one exception), but it must exist
        unless ``--cast-library`` overrides it."""
        value = self.data.get("cast_library")
        if not isinstance(value, str) or self.library_option or self.library is None:
            return
        if not value.strip() or "\0" in value:
            self.doc.problem(("cast_library",), f"cast library {value!r} is not a valid path")
        elif not self.library.exists():
            self.doc.problem(
                ("cast_library",),
                f"cast library folder not found: {self.library.root}",
                "check the path (relative to the story's folder; it may be outside the project); "
                "`storyreel cast add PHOTO --name NAME --library` creates it",
            )

    def relative_hint(self) -> str:
        return f"paths are relative to the folder of the story file ({self.root})"

    def check_cast(self) -> None:
        for name, member in self.cast.items():
            if not isinstance(member, dict):
                continue
            if member.get("library") is not None:
                self.check_library_entry(name, member)
                continue
            if member.get("description") is None:
                words = CastMember.model_fields["description"].description
                self.doc.problem(
                    ("cast", name),
                    "missing 'description'",
                    f"add `description:` ({words}), or take the person from the cast library with "
                    "`library: NAME`",
                    key=True,
                )
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
                    loc,
                    photo,
                    "photo",
                    f"copy it into the project: storyreel cast add PHOTO --name {name}; or share the "
                    f"person through the cast library (cast add --library) and write `library: {name}`",
                )
                if path is None:
                    continue
                kind = special_kind(path)
                use = "use a " + ", ".join(PHOTO_SUFFIXES) + " file"
                if kind == "a folder":
                    self.doc.problem(loc, f"photo {photo!r} is a folder", "list the photo files themselves")
                elif kind:
                    self.doc.problem(loc, f"photo {photo!r} is {kind}, not a photo file", use)
                elif not is_file(path):
                    self.doc.problem(loc, f"photo not found: {photo}", self.missing_hint(path))
                elif path.suffix.lower() not in PHOTO_SUFFIXES:
                    self.doc.problem(loc, f"{photo!r} is not a photo", use)
                elif problem := _readable(path, image_problem):
                    self.doc.problem(
                        loc,
                        f"photo {photo!r} is not an image: {problem}",
                        f"replace it with a photo of {name}",
                    )

    def check_library_entry(self, name: str, member: dict[str, Any]) -> None:
        """``name: {library: MEMBER, …}``: the member must be in the library; photos come from there."""
        if "photos" in member:
            self.doc.problem(
                ("cast", name, "photos"),
                f"'{name}' comes from the cast library, which has the photos",
                "remove `photos:` here, or remove `library:` to use these photos",
                key=True,
            )
        wanted = _as_name(member.get("library"))
        if wanted is None or cast_name_problem(wanted := normalize_name(wanted)):
            return  # reported by the schema
        found = self.library_member(("cast", name, "library"), wanted)
        if found is not None:
            self.library_members[name] = found
            self.library_refs[name] = (("cast", name), None)

    def library_member(self, loc: tuple[Any, ...], wanted: str, mark: Any = None) -> LibraryMember | None:
        """Member ``wanted`` of the library, or None after reporting why at ``loc`` (once per member)."""
        if self.library is None:
            found: LibraryMember | StoryreelError = StoryreelError(
                f"'{wanted}' is to come from a cast library, but none is named", LIBRARY_HINT
            )
        elif wanted in self.looked_up:
            cached = self.looked_up[wanted]
            return cached if not isinstance(cached, StoryreelError) else None
        else:
            try:
                found = self.library.member(wanted)
            except StoryreelError as err:
                found = err
        self.looked_up[wanted] = found
        if isinstance(found, StoryreelError):
            problem = self.doc.make(loc, found.message, found.hint, mark=mark)
            self.doc.problems.append(problem)
            self.doc.reported.add(loc)
            return None
        return found

    def missing_hint(self, path: Path) -> str:
        hint = self.relative_hint()
        try:
            siblings = [p.name for p in path.parent.iterdir()] if is_dir(path.parent) else []
        except OSError:
            siblings = []
        close = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.6)
        if close:
            return f"did you mean '{close[0]}'? " + hint
        return hint

    def known(self, loc: tuple[Any, ...], name: str, *, mark: Any = None) -> bool:
        """Whether ``name`` is a cast member: the story's own, else one of the cast library's (taken as is:
        the first use is remembered for messages). Reports unknown names."""
        if name in self.names:
            return True
        if name in self.library_names:
            if name not in self.library_refs:
                found = self.library_member(loc, name, mark)
                if found is None:
                    return False
                self.library_members[name] = found
                self.library_refs[name] = (loc, mark)
            return name in self.library_members
        self.unknown_name(loc, name, mark=mark)
        return False

    @functools.cached_property
    def library_names(self) -> list[str]:
        """The members of the cast library (none without one)."""
        return self.library.names() if self.library is not None else []

    def unknown_name(self, loc: tuple[Any, ...], name: str, *, mark: Any = None) -> None:
        known = list(self.names)
        library = self.library_names
        hint = did_you_mean(name, known + library)
        if known:
            hint += "known: " + ", ".join(known)
        elif not library:
            hint += "the story has no cast: add it under `cast:`"
        if library:
            hint += ("; " if known else "") + f"in the {self.library}: " + ", ".join(library)
        elif self.library is None and not did_you_mean(name, known):
            hint += f"; from a cast library? {LIBRARY_HINT}"
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
        for name, written in self.names.items():
            if name not in used and self.shots:
                self.warn(("cast", written), f"'{name}' appears in no shot", key=True)
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
        known = set()
        for name in names:
            loc = ("shots", index, "prompt")
            if self.known(loc, name, mark=self.placeholder_mark(loc, "{" + name)):
                known.add(name)
        cast = raw.get("cast")
        if not isinstance(cast, list):
            return names
        listed: list[str] = []
        for position, item in enumerate(cast):
            name = _as_name(item)
            if name is None:
                continue
            name = normalize_name(name)
            if not self.known(("shots", index, "cast", position), name):
                pass
            elif name in listed:
                self.doc.problem(
                    ("shots", index, "cast", position), f"'{name}' is listed twice", "list each once"
                )
            listed.append(name)
        missing = [n for n in names if n in known and n not in listed]
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

    def check_consent(self) -> None:
        """Each person's consent record (``consent.yaml`` beside their photos; every library member should
        have one): a story ``use:`` it does not allow is a problem, an expired record a warning (see
        :mod:`storyreel.consent` for why)."""
        raw = as_uses(self.data.get("use"))
        uses = (
            [use for use in raw if isinstance(use, str) and USE_RE.match(use)]
            if isinstance(raw, list)
            else []
        )
        for name, (folder, where, from_library) in self.consent_folders().items():
            self.check_person_consent(name, folder, where, from_library, uses)

    def consent_folders(self) -> dict[str, tuple[Path, tuple[tuple[Any, ...], Any], bool]]:
        """Per person: the folder that holds their consent record, where they are named (loc, mark) and
        whether they come from the library. A project member's folder is that of their first photo."""
        people = {
            name: (m.directory, self.library_refs[name], True) for name, m in self.library_members.items()
        }
        for name, member in self.cast.items():
            photos = member.get("photos") if isinstance(member, dict) and "library" not in member else None
            first = photos[0] if isinstance(photos, list) and photos else None
            if isinstance(first, str) and first.strip() and is_inside(self.root, Path(first)):
                people[name] = (absolute_path(self.root, Path(first)).parent, (("cast", name), None), False)
        return people

    def check_person_consent(
        self, name: str, folder: Path, where: tuple[tuple[Any, ...], Any], from_library: bool, uses: list[str]
    ) -> None:
        loc, mark = where
        record = folder / CONSENT_FILE
        try:
            consent = read_consent(folder)
        except ConsentError as err:
            self.doc.problems.append(self.doc.make(loc, f"'{name}': {err.message}", err.hint, mark=mark))
            return
        if consent is None:
            if from_library:
                message = f"'{name}' from the cast library has no consent record ({record})"
                hint = (
                    f"record it: storyreel cast add PHOTO --name {folder.name} --library "
                    "--consent-by WHO --allowed-use USE"
                )
                if uses:  # the story asks for a check that cannot be made
                    self.doc.problems.append(
                        self.doc.make(
                            loc, f"{message}: use {', '.join(uses)} cannot be checked", hint, mark=mark
                        )
                    )
                else:
                    self.consent_warning(loc, message, hint, mark)
            return
        ask = consent.contact or consent.given_by
        refused = [use for use in uses if not consent.allows(use)]
        if refused:
            message = (
                f"'{name}' may not appear in a reel for {', '.join(refused)}: the consent record ({record}) "
                f"allows {', '.join(consent.allowed_uses)}"
            )
            hint = f"ask {ask} to extend the consent and update allowed_uses, or change `use:` in story.yaml"
            self.doc.problems.append(self.doc.make(loc, message, hint, mark=mark))
        if consent.expired(today()) and consent.valid_until is not None:
            message = f"the consent of '{name}' expired on {consent.valid_until.isoformat()} ({record})"
            hint = f"ask {ask} to renew it and update valid_until; check before publishing this reel"
            self.consent_warning(loc, message, hint, mark)

    def consent_warning(self, loc: tuple[Any, ...], message: str, hint: str, mark: Any) -> None:
        warning = self.doc.make(loc, message, hint, mark=mark)
        self.warnings.append(warning)
        self.consent_warnings.append(warning)

    def check_timing(self, shots: list[Shot | None], defaults: Defaults) -> None:
        """Warn about long shots and crowded shots; check that transitions fit in the shots they overlap.

        Transitions follow :mod:`storyreel.timeline` (the reel's rules), in seconds. The story asks for
        more than the reel needs: each transition must be *shorter* than the shots it touches, where the
        reel would only shorten what does not fit.
        """
        lengths = [
            None
            if shot is None
            else shot.seconds or (shot.frames / released.FPS if shot.frames else defaults.seconds)
            for shot in shots
        ]
        transitions = [
            ("cut", 0.0) if shot is None else ((t := shot.transition or defaults.transition).type, t.seconds)
            for shot in shots
        ]
        limit = released.MAX_FRAMES / released.FPS
        shorter = [
            length
            for shot, length in zip(shots, lengths, strict=True)
            if shot is not None
            and shot.model_frames is None
            and (shot.engine or defaults.engine) != "wan-vace"  # Wan generates every shot's own frames
            and length is not None
            and length < limit - 1e-9
        ]
        if defaults.model_frames == "shot" and shorter:
            message, hint = _fewer_frames(min(shorter))
            self.warn(("defaults", "model_frames"), f"{len(shorter)} shot(s): " + message, hint)
        incoming = 0.0  # overlap with the previous shot's transition
        for index, (shot, join) in enumerate(zip(shots, joins(transitions), strict=True)):
            length = lengths[index]
            if shot is None or length is None:
                incoming = 0.0
                continue
            self.check_model_limits(index, shot, length, shot.engine or defaults.engine)
            if join.kind == "crossfade" and join.last and shot.transition:
                self.warn(
                    ("shots", index, "transition"),
                    "a crossfade on the last shot has no next shot: it is ignored",
                    "use fade to fade the reel out to black",
                )
            if join.applies:
                self.check_transition(index, shot, join, length, None if join.last else lengths[index + 1])
            outgoing = join.overlap
            if incoming < length and outgoing < length and outgoing > room(length, incoming, None) + 1e-9:
                self.doc.problem(
                    ("shots", index),
                    f"transitions in ({incoming:g} s) and out ({outgoing:g} s) overlap in this "
                    f"{length:g} s shot",
                    "shorten the transitions or lengthen the shot",
                )
            incoming = outgoing

    def check_model_limits(self, index: int, shot: Shot, length: float, engine: str) -> None:
        """Warn when a shot is longer than its model renders, or has more people than it was made for."""
        from storyreel.models import wan_vace

        wan = engine == "wan-vace"
        frames, fps = (
            (wan_vace.WAN_480P.max_frames, wan_vace.WAN_480P.fps)
            if wan
            else (released.MAX_FRAMES, released.FPS)
        )
        limit = frames / fps
        if length > limit + 1e-9:
            self.warn(
                ("shots", index),
                f"{length:g} s is longer than the {'Wan VACE ' if wan else ''}model's {frames} frames at "
                f"{fps} fps (≈{limit:.1f} s)",
                "the clip will be time-stretched to fill it; split long moments into several shots",
            )
        if not wan and shot.model_frames == "shot" and length < limit - 1e-9:
            self.warn(("shots", index, "model_frames"), *_fewer_frames(length))
        people = len(shot.cast or [])
        if wan and people > wan_vace.MAX_REFERENCES:
            self.warn(
                ("shots", index, "cast"),
                f"{people} people in one shot; VACE's own preprocessing takes at most "
                f"{wan_vace.MAX_REFERENCES} reference images",
                "expect people to merge or go missing; split the shot",
            )
        elif not wan and people > released.TRAINED_PEOPLE:
            self.warn(
                ("shots", index, "cast"),
                f"{people} people in one shot; the released weights were trained with "
                f"{released.TRAINED_PEOPLE}",
                "expect weaker likeness; two people per shot is the tested case",
            )

    def check_transition(
        self, index: int, shot: Shot, join: Join[float], length: float, following: float | None
    ) -> None:
        loc = ("shots", index, "transition", "seconds") if shot.transition else ("shots", index)
        origin = "" if shot.transition else " (from defaults.transition)"
        what = f"{join.kind} of {join.seconds:g} s{origin}"
        if join.seconds >= length:
            self.doc.problem(
                loc,
                f"{what} is not shorter than the shot ({length:g} s)",
                "shorten the transition or lengthen the shot",
            )
        elif following is not None and join.seconds >= following:
            self.doc.problem(
                loc,
                f"{what} is not shorter than the next shot ({following:g} s)",
                "shorten the transition or lengthen the next shot",
            )
