"""Checks on what integrators send, with Customer.io's limits."""

import json
import math
import unicodedata
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

from engage.json_checks import (  # noqa: F401 - shared with the API's parser
    _UNSTORABLE,
    MAX_JSON_DEPTH,
    depth_problem,
    has_unstorable,
    json_path,
    nesting_problem,
)
from people.errors import InvalidInput, Problem

MAX_IDENTIFIER_BYTES = 150
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1000
MAX_ATTRIBUTES = 300
MAX_EVENT_NAME_BYTES = 100
MAX_EVENT_DATA_BYTES = 100_000
MAX_EMAIL_LENGTH = 254
# Deeper JSON is refused: nothing engage keeps needs it, and it costs stack to walk.
# Unix seconds past this (the year 5138) are almost surely milliseconds.
MAX_UNIX_SECONDS = 100_000_000_000

IDENTIFIER_TYPES = ("id", "email", "cio_id")
EVENT_TYPES = ("event", "page", "screen")
SUBSCRIPTION_PREFERENCES = "cio_subscription_preferences"

_email_validator = EmailValidator()


def byte_length(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def json_bytes(value: Any) -> int:
    return byte_length(json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                                  default=str))


def value_problem(value: Any, *, field: str) -> Problem | None:
    """Return the first thing in a JSON value that cannot be stored, naming where it is.

    That is text with a NUL or an unpaired surrogate, a number too large to be finite
    (``1e400`` reads as infinity) or nesting deeper than MAX_JSON_DEPTH.
    """
    pending = [(value, field, 0)]
    while pending:
        item, path, depth = pending.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return Problem(path, "invalid_value",
                               f"{path} cannot contain NUL characters or unpaired surrogates")
        elif isinstance(item, float):
            if not math.isfinite(item):
                return Problem(path, "invalid_value", f"{path} must be a finite number")
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return Problem(path, "too_deep",
                               f"{path} is nested more than {MAX_JSON_DEPTH} levels deep")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            children = []
            for key, child in pairs:
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    return Problem(path or "body", "invalid_value",
                                   f"the keys of {path or 'the body'} cannot contain NUL "
                                   "characters or unpaired surrogates")
                children.append((child, json_path(path, key), depth + 1))
            pending.extend(reversed(children))
    return None


def email_key(email: str) -> str:
    """Return the one form in which emails are compared: NFKC-normalised and case-folded.

    ``str.lower()`` and SQL's LOWER / UPPER disagree on letters such as U+017F (long s,
    upper-cased to S) and U+212A (Kelvin sign, lower-cased to k), so emails are never
    folded in SQL: every stored key (email keys, suppressed emails) and every lookup of
    one is folded here.
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email).casefold())


def is_valid_email(value: str) -> bool:
    if len(value) > MAX_EMAIL_LENGTH:
        return False
    try:
        _email_validator(value)
    except ValidationError:
        return False
    return True


def identifier_problems(kind: str, value: Any, *, field: str) -> list[Problem]:
    """Return what is wrong with an identifier of type ``kind``."""
    if kind not in IDENTIFIER_TYPES:
        return [
            Problem(
                field,
                "unknown_identifier_type",
                f"unknown identifier type '{kind}': use one of id, email, cio_id",
            )
        ]
    if isinstance(value, bool) or not isinstance(value, str | int):
        return [Problem(field, "invalid_type", f"{field} must be a string or a number")]
    text = str(value)
    if not text.strip():
        return [Problem(field, "empty", f"{field} cannot be empty")]
    if has_unstorable(text):
        return [Problem(field, "invalid_value",
                        f"{field} cannot contain NUL characters or unpaired surrogates")]
    if byte_length(text) > MAX_IDENTIFIER_BYTES:
        return [
            Problem(
                field, "too_long", f"{field} cannot be longer than {MAX_IDENTIFIER_BYTES} bytes"
            )
        ]
    if kind == "email" and not is_valid_email(text):
        return [Problem(field, "invalid_email", f"{field} '{text}' is not a valid email address")]
    return []


def attribute_problems(attributes: dict, *, field_prefix: str = "") -> list[Problem]:
    """Return what breaks the limits on attribute names, values and count."""
    problems = []
    if len(attributes) > MAX_ATTRIBUTES:
        problems.append(
            Problem(
                field_prefix.rstrip(".") or "attributes",
                "too_many_attributes",
                f"cannot set more than {MAX_ATTRIBUTES} attributes at once",
            )
        )
    for name, value in attributes.items():
        field = f"{field_prefix}{name}"
        if not name:
            problems.append(
                Problem(field or "attributes", "empty", "attribute names cannot be empty"))
        elif byte_length(name) > MAX_ATTRIBUTE_NAME_BYTES:
            problems.append(
                Problem(
                    field,
                    "too_long",
                    f"attribute name '{name[:40]}...' cannot be longer than "
                    f"{MAX_ATTRIBUTE_NAME_BYTES} bytes",
                )
            )
        if isinstance(value, str):
            size = byte_length(value)
        elif value is None or isinstance(value, bool | float):
            size = 0  # a few bytes at most, whatever the value
        else:
            size = json_bytes(value)
        if size > MAX_ATTRIBUTE_VALUE_BYTES:
            problems.append(
                Problem(
                    field,
                    "too_long",
                    f"value for attribute '{name}' cannot be longer than "
                    f"{MAX_ATTRIBUTE_VALUE_BYTES} bytes",
                )
            )
        if has_unstorable(name):
            problems.append(Problem(
                field, "invalid_value",
                f"attribute '{name}' cannot contain NUL characters or unpaired surrogates"))
        elif problem := value_problem(value, field=field):
            problems.append(problem)
        if (not field_prefix and name == SUBSCRIPTION_PREFERENCES
                and value not in (None, "") and not isinstance(value, dict)):
            problems.append(Problem(field, "invalid_type",
                                    f"{SUBSCRIPTION_PREFERENCES} must be an object"))
    return problems


def parse_unix_seconds(value: Any, *, field: str) -> int:
    """Return ``value`` as unix seconds, or raise InvalidInput naming ``field``."""
    if isinstance(value, bool):
        raise InvalidInput.single(field, "invalid_timestamp", f"{field} must be unix seconds")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text) if "." in text else int(text)
        except ValueError:
            raise InvalidInput.single(
                field,
                "invalid_timestamp",
                f"{field} must be a unix timestamp in seconds, not '{value[:40]}'",
            ) from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput.single(field, "invalid_timestamp", f"{field} must be unix seconds")
    seconds = int(value)
    if seconds < 0 or seconds >= MAX_UNIX_SECONDS:
        raise InvalidInput.single(
            field,
            "invalid_timestamp",
            f"{field} must be a unix timestamp in seconds (milliseconds are not accepted)",
        )
    return seconds


def optional_moment(value: Any, *, field: str, problems: list[Problem]) -> datetime | None:
    """Return an optional unix-seconds value as a datetime; add to ``problems`` if bad."""
    if value in (None, ""):
        return None
    try:
        return datetime_from_unix(parse_unix_seconds(value, field=field))
    except InvalidInput as error:
        problems += error.problems
        return None


def datetime_from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def unix_from_datetime(moment: datetime) -> int:
    return int(moment.timestamp())


def is_truthy(value: Any) -> bool:
    """Read ``unsubscribed`` as Customer.io does: true, 1 or "1" in any case; else false."""
    if value is True:
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1"}
    return False


def event_problems(name: Any, data: Any, *, field_prefix: str = "") -> list[Problem]:
    """Return what is wrong with an event's name and data."""
    problems = []
    if not isinstance(name, str) or not name.strip():
        problems.append(Problem(f"{field_prefix}name", "required", "event name is required"))
    elif byte_length(name.strip()) > MAX_EVENT_NAME_BYTES:
        problems.append(
            Problem(
                f"{field_prefix}name",
                "too_long",
                f"event name cannot be longer than {MAX_EVENT_NAME_BYTES} bytes",
            )
        )
    elif has_unstorable(name):
        problems.append(Problem(f"{field_prefix}name", "invalid_value",
                                "event name cannot contain NUL characters or unpaired surrogates"))
    if data is not None and not isinstance(data, dict):
        problems.append(
            Problem(f"{field_prefix}data", "invalid_type", "event data must be an object"))
    elif data and (problem := value_problem(data, field=f"{field_prefix}data")):
        problems.append(problem)
    elif data and json_bytes(data) > MAX_EVENT_DATA_BYTES:
        problems.append(
            Problem(
                f"{field_prefix}data",
                "too_long",
                f"event data cannot be larger than {MAX_EVENT_DATA_BYTES} bytes",
            )
        )
    return problems


def event_type_problems(value: Any, *, field: str = "type") -> list[Problem]:
    """Return what is wrong with an event's type (absent or null means ``event``)."""
    if value is None or (isinstance(value, str) and value in EVENT_TYPES):
        return []
    return [Problem(field, "invalid_value", f"{field} must be one of event, page, screen")]
