"""Consent records (``consent.yaml``): validation at file:line, expiry, uses, updates from `cast add`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from storyreel.consent import (
    CONSENT_FILE,
    Consent,
    ConsentError,
    read_consent,
    updated_consent,
    write_consent,
)
from storyreel.errors import StoryreelError

RECORD = """\
given_by: Alice Martin
valid_until: 2027-06-30
allowed_uses: [internal, social]
contact: alice@example.com
notes: release form 2026-114
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / CONSENT_FILE).write_text(text)
    return tmp_path


def test_a_record_reads_and_round_trips(tmp_path: Path) -> None:
    consent = read_consent(_write(tmp_path, RECORD))
    assert consent == Consent(
        given_by="Alice Martin",
        valid_until=dt.date(2027, 6, 30),
        allowed_uses=["internal", "social"],
        contact="alice@example.com",
        notes="release form 2026-114",
    )
    assert consent.summary() == "given by Alice Martin, until 2027-06-30, for internal, social"
    other = tmp_path / "other"
    write_consent(other, consent)
    assert read_consent(other) == consent
    assert "valid_until: 2027-06-30\n" in (other / CONSENT_FILE).read_text()  # a plain YAML date
    assert read_consent(tmp_path / "nobody") is None


def test_expiry_and_uses() -> None:
    consent = Consent(given_by="A", valid_until=dt.date(2027, 6, 30), allowed_uses=["social"])
    assert not consent.expired(dt.date(2027, 6, 30))  # valid on its last day
    assert consent.expired(dt.date(2027, 7, 1))
    assert not Consent(given_by="A", allowed_uses=["social"]).expired(dt.date(2999, 1, 1))  # no end date
    assert consent.allows("social") and not consent.allows("advertising")
    assert Consent.model_validate({"given_by": "A", "allowed_uses": "social, print"}).allowed_uses == [
        "social",
        "print",
    ]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("given_by: A\nvalid_until: soon\nallowed_uses: [social]\n", 2, "expected a date written YYYY-MM-DD"),
        ("given_by: A\nvalid_until: 2027\nallowed_uses: [social]\n", 2, "expected a date"),  # not epoch
        ("given_by: A\nallowed_uses: [Social Media]\n", 2, "is not a use"),
        ("given_by: A\nallowed_uses: []\n", 2, "allowed_uses"),
        ("allowed_uses: [social]\n", 1, "given_by: Field required"),
        ("given_by: A\nallowed_uses: [social]\nexpires: 2027-01-01\n", 3, "unknown key; allowed: given_by"),
        ("given_by: A\nallowed_uses: [social\n", 3, "YAML syntax error"),
        ("- a list\n", 1, "expected key: value lines"),
    ],
)
def test_bad_records_name_the_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    with pytest.raises(ConsentError) as caught:
        read_consent(_write(tmp_path, text))
    error = caught.value
    assert error.location is not None and error.location.line == line, error
    assert error.location.file == tmp_path / CONSENT_FILE
    assert words in error.message and f"{tmp_path / CONSENT_FILE}:{line}" in error.message
    assert "--consent-by" in (error.hint or "")


def test_updates_keep_what_is_not_given_and_name_the_option() -> None:
    current = Consent(given_by="A", valid_until=dt.date(2027, 1, 1), allowed_uses=["social"])
    assert updated_consent(current, {"given_by": None, "allowed_uses": []}) is current
    assert updated_consent(None, {}) is None
    renewed = updated_consent(current, {"valid_until": "2028-01-01", "allowed_uses": ["social", "print"]})
    assert renewed == Consent(given_by="A", valid_until=dt.date(2028, 1, 1), allowed_uses=["social", "print"])
    with pytest.raises(StoryreelError, match="a consent record needs --allowed-use"):
        updated_consent(None, {"given_by": "A"})
    with pytest.raises(StoryreelError, match="--valid-until: expected a date"):
        updated_consent(current, {"valid_until": "next year"})
    with pytest.raises(StoryreelError, match="--allowed-use: 'TV' is not a use"):
        updated_consent(current, {"allowed_uses": ["TV"]})
