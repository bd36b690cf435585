"""Date trigger arithmetic: parsing values, occurrences, month ends, leap days, DST."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns import dates
from campaigns.dates import DateTrigger, Occurrence

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def trigger(recurrence="monthly", offset=0, at="09:00", zone="UTC", fallback="UTC"):
    return DateTrigger.from_definition({
        "attribute": "renewal_at", "recurrence": recurrence, "offset_days": offset,
        "time": at, "timezone": zone, "fallback_timezone": fallback})


def utc(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    (1_700_000_000, utc(2023, 11, 14, 22, 13, 20)),
    (1_700_000_000.5, utc(2023, 11, 14, 22, 13, 20, 500_000)),
    ("1700000000", utc(2023, 11, 14, 22, 13, 20)),
    (" 1700000000 ", utc(2023, 11, 14, 22, 13, 20)),
    (-86_400, utc(1969, 12, 31)),
    ("2026-03-31", date(2026, 3, 31)),
    ("2026-03-31T23:30:00", date(2026, 3, 31)),
    ("2026-03-31 23:30", date(2026, 3, 31)),
    ("2026-03-31T23:30:00Z", utc(2026, 3, 31, 23, 30)),
    ("2026-03-31T23:30:00+02:00", utc(2026, 3, 31, 21, 30)),
])
def test_values_are_unix_seconds_or_iso_8601(value, expected):
    assert dates.parse_value(value) == expected


@pytest.mark.parametrize("value", [
    None, True, False, "", "soon", "2026-02-30", "2026-13-01", "31/03/2026", "2026-3-31",
    float("nan"), float("inf"), 10**30, "1e5", [2026, 3, 31], {"date": "2026-03-31"},
    "2026-03-31T25:00", "9" * 400,
])
def test_anything_else_is_no_date(value):
    assert dates.parse_value(value) is None


@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.booleans(),
                 st.none(), st.lists(st.integers(), max_size=2)))
def test_parsing_never_raises(value):
    parsed = dates.parse_value(value)
    assert parsed is None or isinstance(parsed, date)


def test_a_moment_falls_on_its_date_in_the_persons_zone():
    moment = dates.parse_value("2026-03-31T23:30:00Z")
    assert dates.value_date(moment, BERLIN) == date(2026, 4, 1)
    assert dates.value_date(moment, NEW_YORK) == date(2026, 3, 31)
    assert dates.value_date(date(2026, 3, 31), BERLIN) == date(2026, 3, 31)


def test_monthly_fires_on_the_last_day_of_shorter_months():
    found = []
    moment = utc(2026, 1, 1)
    for _ in range(5):
        occurrence = dates.next_occurrence(trigger(), date(1977, 1, 31), ZoneInfo("UTC"),
                                           moment)
        found.append(occurrence.fire_at)
        moment = occurrence.fire_at + timedelta(seconds=1)
    assert found == [utc(2026, 1, 31, 9), utc(2026, 2, 28, 9), utc(2026, 3, 31, 9),
                     utc(2026, 4, 30, 9), utc(2026, 5, 31, 9)]


def test_yearly_fires_a_leap_day_on_feb_28_in_common_years():
    leap_day = date(2000, 2, 29)
    fire = [dates.next_occurrence(trigger("yearly"), leap_day, ZoneInfo("UTC"),
                                  utc(year, 1, 1)) for year in (2027, 2028)]
    assert [occurrence.key for occurrence in fire] == [date(2027, 2, 28), date(2028, 2, 29)]


def test_once_fires_only_while_ahead():
    renewal = date(2026, 6, 5)
    assert dates.next_occurrence(trigger("once"), renewal, ZoneInfo("UTC"),
                                 utc(2026, 6, 5, 9)) == Occurrence(renewal, utc(2026, 6, 5, 9))
    assert dates.next_occurrence(trigger("once"), renewal, ZoneInfo("UTC"),
                                 utc(2026, 6, 5, 9, 0, 1)) is None


def test_offsets_move_the_fire_date_but_keep_the_occurrence():
    found = dates.next_occurrence(trigger("once", offset=-3), date(2026, 3, 2),
                                  ZoneInfo("UTC"), utc(2026, 1, 1))
    assert found == Occurrence(date(2026, 3, 2), utc(2026, 2, 27, 9))


@pytest.mark.parametrize(("zone", "day", "at", "expected"), [
    # Clocks go forward 02:00 -> 03:00: 02:30 does not happen; it fires at 03:00.
    (BERLIN, date(2026, 3, 29), "02:30", utc(2026, 3, 29, 1, 0)),
    (NEW_YORK, date(2026, 3, 8), "02:30", utc(2026, 3, 8, 7, 0)),
    # Clocks go back 03:00 -> 02:00: 02:30 happens twice; it fires the first time.
    (BERLIN, date(2026, 10, 25), "02:30", utc(2026, 10, 25, 0, 30)),
    (NEW_YORK, date(2026, 11, 1), "01:30", utc(2026, 11, 1, 5, 30)),
    # Ordinary days either side.
    (BERLIN, date(2026, 3, 28), "02:30", utc(2026, 3, 28, 1, 30)),
    (NEW_YORK, date(2026, 11, 2), "01:30", utc(2026, 11, 2, 6, 30)),
])
def test_dst_gaps_fire_after_the_gap_and_repeats_fire_once(zone, day, at, expected):
    settings_ = trigger("once", at=at, zone=zone.key)
    assert dates.next_occurrence(settings_, day, zone, utc(2026, 1, 1)).fire_at == expected


def test_the_persons_zone_falls_back_when_missing_or_unknown():
    person = trigger(zone="person", fallback="America/New_York")
    assert dates.person_zone(person, {"timezone": "Europe/Berlin"}) == BERLIN
    assert dates.person_zone(person, {"timezone": "Mars/Olympus"}) == NEW_YORK
    assert dates.person_zone(person, {"timezone": "../../etc/passwd"}) == NEW_YORK
    assert dates.person_zone(person, {"timezone": 5}) == NEW_YORK
    assert dates.person_zone(person, {}) == NEW_YORK
    assert dates.person_zone(trigger(zone="Europe/Berlin"), {"timezone": "UTC"}) == BERLIN


def test_written_dates_cover_month_ends_and_leap_days():
    assert dates.written_dates(trigger("monthly"), [date(2026, 4, 30)], slack_days=0) == {
        "30", "31"}
    assert dates.written_dates(trigger("yearly"), [date(2027, 2, 28)], slack_days=0) == {
        "02-28", "02-29"}
    assert dates.written_dates(trigger("once"), [date(2026, 4, 30)], slack_days=1) == {
        "2026-04-29", "2026-04-30", "2026-05-01"}


# --- properties ------------------------------------------------------------------------

ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                         "Pacific/Apia", "Asia/Kolkata", "America/St_Johns"])
VALUES = st.dates(min_value=date(1950, 1, 1), max_value=date(2040, 12, 31))
MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2039, 12, 31),
                       timezones=st.just(UTC))
TRIGGERS = st.builds(
    lambda recurrence, offset, hour, minute, zone: trigger(
        recurrence, offset, f"{hour:02d}:{minute:02d}", zone),
    st.sampled_from(dates.RECURRENCES), st.integers(-365, 365), st.integers(0, 23),
    st.sampled_from([0, 15, 30, 59]), ZONES)


def _local_date_of_fire(found: Occurrence, tz: ZoneInfo, settings_: DateTrigger) -> bool:
    """Tell whether the fire time is the occurrence date plus the offset, locally (or
    the next day when a DST gap swallowed the time at the end of a day)."""
    local = found.fire_at.astimezone(tz)
    wanted = found.key + timedelta(days=settings_.offset_days)
    if local.date() == wanted:
        return True
    return local.date() == wanted + timedelta(days=1) and local.time() < settings_.time


@settings(max_examples=300, deadline=None)
@given(TRIGGERS, VALUES, MOMENTS)
def test_the_fire_time_is_the_occurrence_date_plus_the_offset_at_or_after_now(
        settings_, value, moment):
    tz = ZoneInfo(settings_.timezone)
    found = dates.next_occurrence(settings_, value, tz, moment)
    if settings_.recurrence != "once":
        assert found is not None
    if found is None:
        return
    assert found.fire_at >= moment
    assert _local_date_of_fire(found, tz, settings_)
    local = found.fire_at.astimezone(tz)
    assert local.time() >= settings_.time or local.date() > found.key + timedelta(
        days=settings_.offset_days)
    if settings_.recurrence == "yearly":
        assert (found.key.month, min(value.day, 28)) <= (value.month, found.key.day)
    if settings_.recurrence == "monthly":
        assert found.key.day == value.day or found.key.day < value.day and (
            found.key + timedelta(days=1)).day == 1


@settings(max_examples=200, deadline=None)
@given(TRIGGERS, VALUES, MOMENTS)
def test_one_fire_time_per_occurrence_and_each_occurrence_once(settings_, value, moment):
    tz = ZoneInfo(settings_.timezone)
    found = dates.next_occurrence(settings_, value, tz, moment)
    if found is None:
        return
    # Asking again from any moment up to the fire time gives the same occurrence...
    for earlier in (moment, found.fire_at - timedelta(hours=1), found.fire_at):
        if earlier >= moment:
            assert dates.next_occurrence(settings_, value, tz, earlier) == found
    # ...and after it, a later one with another key.
    following = dates.next_occurrence(settings_, value, tz, found.fire_at + timedelta(
        microseconds=1))
    if following is not None:
        assert following.key > found.key and following.fire_at > found.fire_at


@settings(max_examples=100, deadline=None)
@given(VALUES, ZONES, st.integers(2001, 2038), st.integers(-40, 40))
def test_monthly_fires_once_in_every_month(value, zone_name, year, offset):
    settings_ = trigger("monthly", offset=offset, zone=zone_name)
    tz = ZoneInfo(zone_name)
    moment = datetime(year, 1, 1, tzinfo=tz)
    months = []
    for _ in range(14):
        found = dates.next_occurrence(settings_, value, tz, moment)
        months.append((found.key.year, found.key.month))
        moment = found.fire_at + timedelta(microseconds=1)
    assert len(set(months)) == len(months)  # never two in one month
    for (y1, m1), (y2, m2) in zip(months, months[1:], strict=False):
        assert y2 * 12 + m2 == y1 * 12 + m1 + 1  # and no month left out


@settings(max_examples=100, deadline=None)
@given(TRIGGERS, VALUES, MOMENTS, st.integers(1, 24 * 60))
def test_the_window_plan_finds_every_occurrence_that_fires_in_it(settings_, value, moment,
                                                                 minutes):
    tz = ZoneInfo(settings_.timezone)
    until = moment + timedelta(minutes=minutes)
    found = dates.next_occurrence(settings_, value, tz, moment + timedelta(microseconds=1))
    keys = dates.fires_between(settings_, tz, moment, until)
    if found is not None and found.fire_at <= until:
        assert found.key in keys
        written = value.isoformat()
        patterns = dates.written_dates(settings_, keys, slack_days=0)
        part = {"once": written, "yearly": written[5:], "monthly": written[8:]}
        assert part[settings_.recurrence] in patterns


def test_a_time_of_day_in_a_window_names_the_zones_where_it_falls():
    at_nine = trigger(zone="person")
    firing = dates.zones_firing(at_nine, utc(2026, 7, 1, 6, 59), utc(2026, 7, 1, 7, 0))
    assert "Europe/Berlin" in firing and "Europe/Paris" in firing
    assert "Europe/London" not in firing and "America/New_York" not in firing
    assert dates.zones_firing(at_nine, utc(2026, 7, 1, 7, 1), utc(2026, 7, 1, 7, 2)) == set()


def test_default_time_is_nine():
    assert DateTrigger(attribute="x").time == time(9, 0)
