"""Consent and usage records of cast members: ``consent.yaml`` in a member's folder.

Every member of a cast library carries one (``storyreel cast add --library`` writes it); a project's own
cast members may have one too. The file is small, hand-editable YAML, validated on every read::

    given_by: Alice Martin            # who gave consent (the person, or their guardian or agent)
    valid_until: 2027-06-30           # last day it is valid; leave it out for no end date
    allowed_uses: [internal, social]  # what the likeness may be used for (a story's `use:` is checked)
    contact: alice@example.com        # optional: whom to ask for a renewal
    notes: release form 2026-114      # optional

How it is enforced (:mod:`storyreel.story.checks`): a story whose ``use:`` is not among a member's
``allowed_uses`` is refused, because the story states a use the person did not agree to; an expired
record is a warning in ``validate`` and ``render``, because the record on disk may lag a renewal and an
approved reel must stay re-renderable, so the producer decides.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from storyreel.errors import Location, StoryreelError
from storyreel.fsutil import atomic_write_text

__all__ = [
    "CONSENT_FILE",
    "CONSENT_OPTIONS",
    "CONSENT_USAGE",
    "USE_PATTERN",
    "USE_RE",
    "Consent",
    "ConsentError",
    "ConsentProblem",
    "Uses",
    "as_uses",
    "parse_consent",
    "read_consent",
    "today",
    "updated_consent",
    "write_consent",
]

CONSENT_FILE = "consent.yaml"
USE_PATTERN = r"^[a-z][a-z0-9_-]{0,39}$"
"""A use is one lower-case word (``internal``, ``social``, ``advertising``, ``broadcast``, ``print``, …)."""
USE_RE = re.compile(USE_PATTERN)
MAX_CONSENT_BYTES = 100_000


def today() -> dt.date:
    """The date consent expiry is judged by (the local date)."""
    return dt.date.today()


def as_uses(value: Any) -> Any:
    """Uses written ``social``, ``social, print`` or as a list: a list of words (other values unchanged)."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [part.strip() for item in value for part in item.split(",") if part.strip()]
    return value


def _date_only(value: Any) -> Any:
    """Dates (YAML reads ``2027-06-30`` as one) and ``YYYY-MM-DD`` text; never numbers (epoch seconds)."""
    if value is None or isinstance(value, dt.date):
        return value.date() if isinstance(value, dt.datetime) else value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a date written YYYY-MM-DD, got {value!r}")


def _use_word(value: str) -> str:
    if not USE_RE.match(value):
        message = f"{value!r} is not a use: write one lower-case word (internal, social, advertising, …)"
        raise PydanticCustomError("story", "{message}", {"message": message, "hint": None, "field": None})
    return value


UseName = Annotated[
    str, AfterValidator(_use_word), WithJsonSchema({"type": "string", "pattern": USE_PATTERN})
]
Uses = Annotated[list[UseName], BeforeValidator(as_uses, json_schema_input_type=str | list[UseName])]


class Consent(BaseModel):
    """A member's consent and usage record (``consent.yaml``)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    given_by: str = Field(
        ...,
        min_length=1,
        max_length=200,
        description="Who gave consent: the person, or their guardian or agent",
    )
    valid_until: Annotated[dt.date | None, BeforeValidator(_date_only)] = Field(
        None, description="Last day the consent is valid (YYYY-MM-DD); none: no end date"
    )
    allowed_uses: Uses = Field(
        ..., min_length=1, description="What the likeness may be used for, e.g. internal, social, advertising"
    )
    contact: str | None = Field(None, max_length=200, description="Whom to ask about renewals or other uses")
    notes: str | None = Field(None, max_length=2000, description="Anything else (release form, restrictions)")

    def expired(self, on: dt.date | None = None) -> bool:
        """Whether ``valid_until`` is before ``on`` (default: :func:`today`)."""
        return self.valid_until is not None and self.valid_until < (on or today())

    def allows(self, use: str) -> bool:
        """Whether ``use`` is one of the allowed uses."""
        return use in self.allowed_uses

    def summary(self) -> str:
        """One line: who, until when, for what."""
        until = f"until {self.valid_until.isoformat()}" if self.valid_until else "no end date"
        return f"given by {self.given_by}, {until}, for {', '.join(self.allowed_uses)}"


@dataclass(frozen=True)
class ConsentProblem:
    """One problem of a consent file."""

    location: Location
    message: str


class ConsentError(StoryreelError):
    """A ``consent.yaml`` that cannot be read or does not validate; :attr:`problems` lists every problem."""

    def __init__(self, path: Path, problems: list[ConsentProblem]):
        self.path = Path(path)
        self.problems = problems
        lines = "; ".join(f"{p.location}: {p.message}" for p in problems)
        super().__init__(
            f"{path} is not a valid consent record: {lines}",
            "fix the file (given_by, valid_until YYYY-MM-DD, allowed_uses [..], contact, notes), or write it "
            "again with `storyreel cast add PHOTO --name NAME --library --consent-by … --allowed-use …`",
            location=problems[0].location if problems else Location(path),
        )


def _key_lines(text: str) -> dict[str, int]:
    """Line of each top-level key (1-based); empty when the text is not a mapping."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {
        str(key.value): key.start_mark.line + 1 for key, _ in node.value if isinstance(key, yaml.ScalarNode)
    }


def parse_consent(text: str, path: Path) -> Consent:
    """Validate the text of a consent file shown as ``path``; :class:`ConsentError` lists every problem."""
    path = Path(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConsentError(
            path, [ConsentProblem(Location(path, line), f"YAML syntax error: {err}")]
        ) from None
    if not isinstance(data, dict):
        message = "expected key: value lines (given_by, valid_until, allowed_uses, contact, notes)"
        raise ConsentError(path, [ConsentProblem(Location(path, 1), message)])
    lines = _key_lines(text)
    try:
        return Consent.model_validate(data)
    except ValidationError as err:
        problems = []
        for error in err.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key; allowed: " + ", ".join(Consent.model_fields)
            problems.append(ConsentProblem(Location(path, lines.get(field, 1)), f"{where}: {message}"))
        raise ConsentError(path, problems) from None


def read_consent(directory: Path) -> Consent | None:
    """The consent record in a member folder, None when it has none; :class:`ConsentError` when invalid."""
    path = Path(directory) / CONSENT_FILE
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONSENT_BYTES + 1)
        if len(data) > MAX_CONSENT_BYTES:
            raise ConsentError(
                path, [ConsentProblem(Location(path), "larger than 100 kB: not a consent record")]
            )
        text = data.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ConsentError(path, [ConsentProblem(Location(path), f"unreadable ({err})")]) from None
    return parse_consent(text, path)


CONSENT_OPTIONS = {
    "given_by": "--consent-by",
    "valid_until": "--valid-until",
    "allowed_uses": "--allowed-use",
    "contact": "--contact",
    "notes": "--notes",
}
"""The ``cast add`` option that sets each field."""
CONSENT_USAGE = "--consent-by WHO --allowed-use USE [--valid-until YYYY-MM-DD] [--contact …] [--notes …]"


def updated_consent(current: Consent | None, changes: Mapping[str, Any]) -> Consent | None:
    """``current`` with ``changes`` (field → value; None or empty: unchanged) applied and validated; None
    when there is neither. Errors name the ``cast add`` option (:data:`CONSENT_OPTIONS`)."""
    changes = {field: value for field, value in changes.items() if value not in (None, [], "")}
    if not changes:
        return current
    data = {**(current.model_dump() if current is not None else {}), **changes}
    try:
        return Consent.model_validate(data)
    except ValidationError as err:
        error = err.errors(include_url=False)[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        option = CONSENT_OPTIONS.get(field, field)
        if error["type"] == "missing":
            raise StoryreelError(f"a consent record needs {option}", f"give {CONSENT_USAGE}") from None
        message = error["msg"].removeprefix("Value error, ")
        raise StoryreelError(f"{option}: {message}", f"give {CONSENT_USAGE}") from None


def write_consent(directory: Path, consent: Consent) -> Path:
    """Write ``consent.yaml`` into a member folder (atomically); returns its path."""
    path = Path(directory) / CONSENT_FILE
    data = consent.model_dump(exclude_none=True)  # dates stay dates: YAML writes them unquoted
    header = "# consent and usage record (storyreel); see README, Cast library\n"
    atomic_write_text(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path
