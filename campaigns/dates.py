"""When a date trigger fires for one person: pure date arithmetic, no database.

A date trigger (``{"date": {...}}`` in a campaign definition) reads a date from an
attribute and fires on its occurrences:

- ``once``: on the date itself (only while it is still ahead);
- ``monthly``: on the date's day of every month, or the month's last day when the month
  is shorter (the 31st fires on Feb 28/29, Apr 30...);
- ``yearly``: on the date's month and day every year (Feb 29 fires on Feb 28 in common
  years);

``offset_days`` days before (negative) or after it, at ``time`` in a fixed zone or in the
person's ``timezone`` attribute (the fallback zone when that is missing or not a known
IANA name). A local time that a DST change skips fires at the first moment after the
gap; a local time that happens twice fires once, the first time.

An occurrence is named by its date (``key``): one fire time per occurrence, so a date
occurrence enters a person at most once.
"""

import math
import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from segments.conditions import parse_path

RECURRENCES = ("once", "monthly", "yearly")
# Unix seconds of 0001-01-01 and of the end of 9999: the dates Python can hold.
MIN_UNIX = -62_135_596_800
MAX_UNIX = 253_402_300_799
# ISO 8601 calendar dates in extended form, with or without a time and a zone: what the
# scan can also select by in SQL (the written date is the text's first ten characters).
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ].*)?\Z", re.DOTALL)
UNIX_TEXT = re.compile(r"\s*[-+]?\d+(?:\.\d+)?\s*\Z")
MAX_TEXT = 64
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DateTrigger:
    """The settings of a date trigger, as a validated definition holds them."""

    attribute: str
    recurrence: str = "once"
    offset_days: int = 0
    time: time = time(9, 0)
    timezone: str = "UTC"  # an IANA name, or "person"
    fallback_timezone: str = "UTC"

    @classmethod
    def from_definition(cls, body: dict) -> "DateTrigger":
        """Read the ``date`` trigger of a validated definition."""
        return cls(attribute=body["attribute"], recurrence=body.get("recurrence", "once"),
                   offset_days=body.get("offset_days", 0),
                   time=datetime.strptime(body.get("time", "09:00"), "%H:%M").time(),
                   timezone=body.get("timezone", "UTC"),
                   fallback_timezone=body.get("fallback_timezone", "UTC"))

    @property
    def per_person_zone(self) -> bool:
        return self.timezone == "person"


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of a date trigger for one person: its date and when it fires."""

    key: date  # the occurrence's date (before the offset), in the person's zone
    fire_at: datetime  # aware, UTC


# --- reading attributes ------------------------------------------------------------------


def attribute_value(attributes: dict, path: str) -> Any:
    """Return the value at ``path`` (``a.b``, ``items[0]``) in attributes, or None.

    A path with ``[]`` (any element) names no single date: None.
    """
    value: Any = attributes
    for step in parse_path(path):
        if step.kind == "key" and isinstance(value, dict):
            value = value.get(step.value)
        elif step.kind == "index" and isinstance(value, list) and step.value < len(value):
            value = value[step.value]
        else:
            return None
    return value


def parse_value(value: Any) -> date | datetime | None:
    """Return the date an attribute value holds: a date, an aware datetime, or None.

    Unix seconds (an int, a float or a numeric string) and ISO 8601 datetimes with a zone
    are moments (aware datetimes, whose date depends on the zone they are seen in); an
    ISO date, or a datetime without a zone, is a date as written. Anything else is None,
    never an exception.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            return None
        if UNIX_TEXT.match(value):
            value = float(value)
        elif ISO_DATE.match(value):
            try:
                moment = datetime.fromisoformat(value.rstrip())
            except ValueError:
                return None
            if moment.tzinfo is None:
                return moment.date()
            try:
                return moment.astimezone(UTC)
            except (OverflowError, ValueError):
                return None
        else:
            return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or not MIN_UNIX <= value <= MAX_UNIX:
            return None
        try:
            return EPOCH + timedelta(seconds=value)
        except OverflowError:
            return None
    return None


def value_date(parsed: date | datetime, zone: ZoneInfo) -> date | None:
    """Return the date a parsed value falls on in ``zone`` (a moment's local date)."""
    if isinstance(parsed, datetime):
        try:
            return parsed.astimezone(zone).date()
        except (OverflowError, ValueError):
            return None
    return parsed


# --- zones -------------------------------------------------------------------------------


@cache
def known_zones() -> frozenset[str]:
    """Return the IANA zone names engage knows (a person's zone must be one of them)."""
    return frozenset(available_timezones())


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def person_zone(trigger: DateTrigger, attributes: dict) -> ZoneInfo:
    """Return the zone the trigger fires in for a person with these attributes."""
    if not trigger.per_person_zone:
        return zone(trigger.timezone)
    name = attributes.get("timezone")
    if isinstance(name, str) and name in known_zones():
        return zone(name)
    return zone(trigger.fallback_timezone)


# --- occurrences -------------------------------------------------------------------------


def local_moment(day: date, at: time, tz: ZoneInfo) -> datetime:
    """Return the moment (UTC) the local ``day`` at ``at`` happens in ``tz``.

    A skipped local time (a DST gap) gives the first moment after the gap; a repeated
    one (clocks set back) gives its first happening.
    """
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # exists (fold=0 is the first of two when it repeats)
    # In a gap: fold=1 reads the wall time with the offset after the change, which lands
    # before the gap; fold=0 with the offset before it, after the gap. The change lies
    # between: find it to the second.
    low, high = wall.replace(tzinfo=tz, fold=1).astimezone(UTC), first
    after = high.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _clamped(year: int, month: int, day: int) -> date:
    """Return the day of that month, or the month's last day when it is shorter."""
    return date(year, month, min(day, monthrange(year, month)[1]))


def occurrence_dates(value: date, recurrence: str, start: date):
    """Yield the occurrence dates of ``value`` from ``start`` on, in order."""
    if recurrence == "once":
        if value >= start:
            yield value
        return
    year, month = start.year, start.month
    if recurrence == "yearly":
        month = value.month
        if _clamped(year, month, value.day) < start:
            year += 1
        while year <= 9999:
            yield _clamped(year, month, value.day)
            year += 1
        return
    while year <= 9999:
        found = _clamped(year, month, value.day)
        if found >= start:
            yield found
        month += 1
        if month > 12:
            year, month = year + 1, 1


def next_occurrence(trigger: DateTrigger, value: date, tz: ZoneInfo,
                    moment: datetime) -> Occurrence | None:
    """Return the first occurrence of ``value`` that fires at or after ``moment``.

    ``value`` is the attribute's date in the person's zone ``tz`` (``value_date``).
    """
    offset = timedelta(days=trigger.offset_days)
    # A day earlier than the local date: a gap may move a fire time past midnight.
    try:
        start = moment.astimezone(tz).date() - timedelta(days=1) - offset
    except OverflowError:
        return None
    for key in occurrence_dates(value, trigger.recurrence, start):
        try:
            fire_at = local_moment(key + offset, trigger.time, tz)
        except OverflowError:
            return None
        if fire_at >= moment:
            return Occurrence(key, fire_at)
    return None


def occurrence_for(trigger: DateTrigger, attributes: dict,
                   moment: datetime) -> Occurrence | None:
    """Return a person's next occurrence at or after ``moment``, from their attributes."""
    parsed = parse_value(attribute_value(attributes, trigger.attribute))
    if parsed is None:
        return None
    tz = person_zone(trigger, attributes)
    found = value_date(parsed, tz)
    if found is None:
        return None
    return next_occurrence(trigger, found, tz, moment)


# --- narrowing a scan: which values and zones can fire in a window ------------------------


def fires_between(trigger: DateTrigger, tz: ZoneInfo, after: datetime,
                  until: datetime) -> list[date]:
    """Return the occurrence dates whose fire time in ``tz`` is in (after, until]."""
    offset = timedelta(days=trigger.offset_days)
    first = after.astimezone(tz).date() - timedelta(days=1)
    last = until.astimezone(tz).date() + timedelta(days=1)
    found = []
    day = first
    while day <= last:
        if after < local_moment(day, trigger.time, tz) <= until:
            found.append(day - offset)
        day += timedelta(days=1)
    return found


def zones_firing(trigger: DateTrigger, after: datetime, until: datetime) -> set[str]:
    """Return the known zones in which the trigger's time of day falls in (after, until]."""
    return {name for name in known_zones()
            if fires_between(trigger, zone(name), after, until)}


def written_dates(trigger: DateTrigger, keys: list[date], *, slack_days: int) -> set[str]:
    """Return the patterns of attribute dates that may have one of the occurrence ``keys``.

    Patterns match the written (UTC, for unix seconds) date ``YYYY-MM-DD``: the whole
    date (once), ``MM-DD`` (yearly) or ``DD`` (monthly). A value's written date and its
    date in a zone differ by up to ``slack_days``, so the keys are widened by that much.
    """
    patterns: set[str] = set()
    for key in keys:
        for shift in range(-slack_days, slack_days + 1):
            try:
                day = key + timedelta(days=shift)
            except OverflowError:
                continue
            last = monthrange(day.year, day.month)[1]
            if trigger.recurrence == "once":
                patterns.add(day.isoformat())
            elif trigger.recurrence == "yearly":
                patterns.add(day.strftime("%m-%d"))
                if day.month == 2 and day.day == last == 28:
                    patterns.add("02-29")
            else:
                patterns.update(f"{d:02d}" for d in range(day.day, 32 if day.day == last
                                                          else day.day + 1))
    return patterns
