"""The date trigger scan: who enters when, once, late but not too late, per workspace."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from campaigns import date_triggers, services, tasks
from campaigns.models import Campaign, DateTriggerScan, Journey
from people import services as people
from tests.factories import make_person, make_workspace

START = datetime(2026, 1, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def date_campaign(workspace, **trigger) -> Campaign:
    body = {"attribute": "renewal_at", "recurrence": "monthly", "time": "09:00",
            "timezone": "UTC", **trigger}
    campaign = services.create_campaign(workspace, {
        "name": "Renewal", "trigger": {"date": body},
        "workflow": {"steps": [{"id": "wait", "type": "delay", "duration": {"days": 1}}]}})
    return services.start_campaign(campaign)


def entered(campaign) -> list[str]:
    return sorted(Journey.objects.filter(campaign=campaign).values_list("entry_key", flat=True))


def scan_every_minute(travel, until: datetime) -> None:
    """Run the scan each minute from now until ``until``, as the schedule would."""
    now = datetime.now(UTC)
    while now < until:
        now += timedelta(minutes=1)
        travel.move_to(now)
        date_triggers.scan_date_campaigns()


@pytest.mark.django_db
def test_monthly_fires_on_the_last_day_across_a_month_boundary(workspace, travel):
    campaign = date_campaign(workspace)
    ada = make_person(workspace, "ada", renewal_at="1977-01-31")
    bob = make_person(workspace, "bob", renewal_at=int(datetime(2020, 3, 1, tzinfo=UTC)
                                                           .timestamp()))
    make_person(workspace, "cat", renewal_at="someday")

    travel.move_to(datetime(2026, 1, 31, 8, 59, tzinfo=UTC))
    date_triggers.scan_date_campaigns()
    assert entered(campaign) == []
    scan_every_minute(travel, datetime(2026, 1, 31, 9, 1, tzinfo=UTC))
    assert entered(campaign) == [f"date:{ada.pk}:2026-01-31"]

    travel.move_to(datetime(2026, 2, 28, 9, 0, tzinfo=UTC))
    date_triggers.scan_date_campaigns()
    travel.move_to(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    date_triggers.scan_date_campaigns()
    assert entered(campaign) == [f"date:{ada.pk}:2026-01-31", f"date:{ada.pk}:2026-02-28",
                                 f"date:{bob.pk}:2026-03-01"]
    journey = Journey.objects.get(entry_key=f"date:{bob.pk}:2026-03-01")
    assert journey.person_id == bob.pk and journey.cio_id == bob.cio_id
    assert journey.context["date"]["occurrence"] == "2026-03-01"


@pytest.mark.django_db
def test_yearly_fires_a_leap_day_on_feb_28_in_a_common_year(workspace, travel):
    campaign = date_campaign(workspace, recurrence="yearly", offset_days=-1)
    leap = make_person(workspace, "leap", renewal_at="2000-02-29T15:00:00")

    travel.move_to(datetime(2026, 2, 27, 9, 0, tzinfo=UTC))  # the day before Feb 28
    date_triggers.scan_date_campaigns()
    travel.move_to(datetime(2028, 2, 28, 9, 0, tzinfo=UTC))  # the day before Feb 29
    DateTriggerScan.objects.update(scanned_until=datetime(2028, 2, 28, 8, 0, tzinfo=UTC))
    date_triggers.scan_date_campaigns()

    assert entered(campaign) == [f"date:{leap.pk}:2026-02-28", f"date:{leap.pk}:2028-02-29"]


@pytest.mark.django_db
@pytest.mark.parametrize(("zone", "day", "fires_at"), [
    ("Europe/Berlin", "2026-03-29", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
    ("America/New_York", "2026-03-08", datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
])
def test_a_time_skipped_by_dst_fires_after_the_gap(workspace, travel, zone, day, fires_at):
    campaign = date_campaign(workspace, recurrence="once", time="02:30", timezone=zone)
    ada = make_person(workspace, "ada", renewal_at=day)

    travel.move_to(fires_at - timedelta(minutes=2))
    date_triggers.scan_date_campaigns()
    travel.move_to(fires_at - timedelta(seconds=1))
    date_triggers.scan_date_campaigns()
    assert entered(campaign) == []
    travel.move_to(fires_at)
    date_triggers.scan_date_campaigns()
    assert entered(campaign) == [f"date:{ada.pk}:{day}"]


@pytest.mark.django_db
@pytest.mark.parametrize(("zone", "day", "first"), [
    ("Europe/Berlin", "2026-10-25", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    ("America/New_York", "2026-11-01", datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
])
def test_a_repeated_time_fires_once_the_first_time(workspace, travel, zone, day, first):
    at = "02:30" if zone == "Europe/Berlin" else "01:30"
    campaign = date_campaign(workspace, recurrence="monthly", time=at, timezone=zone)
    ada = make_person(workspace, "ada", renewal_at=day)

    travel.move_to(first - timedelta(minutes=1))
    date_triggers.scan_date_campaigns()
    scan_every_minute(travel, first + timedelta(hours=1, minutes=2))  # past the repeat

    assert entered(campaign) == [f"date:{ada.pk}:{day}"]
    assert Journey.objects.get(campaign=campaign).entered_at == first


@pytest.mark.django_db
def test_the_persons_zone_and_the_fallback_for_an_invalid_one(workspace, travel):
    campaign = date_campaign(workspace, recurrence="once", timezone="person",
                             fallback_timezone="America/New_York")
    berlin = make_person(workspace, "berlin", renewal_at="2026-02-02",
                         timezone="Europe/Berlin")
    invalid = make_person(workspace, "invalid", renewal_at="2026-02-02",
                          timezone="Mars/Olympus")
    missing = make_person(workspace, "missing", renewal_at="2026-02-02")

    travel.move_to(datetime(2026, 2, 2, 7, 59, tzinfo=UTC))
    date_triggers.scan_date_campaigns()
    travel.move_to(datetime(2026, 2, 2, 8, 0, tzinfo=UTC))  # 09:00 in Berlin
    date_triggers.scan_date_campaigns()
    assert entered(campaign) == [f"date:{berlin.pk}:2026-02-02"]

    travel.move_to(datetime(2026, 2, 2, 13, 59, tzinfo=UTC))
    date_triggers.scan_date_campaigns()
    assert len(entered(campaign)) == 1
    travel.move_to(datetime(2026, 2, 2, 14, 0, tzinfo=UTC))  # 09:00 in New York
    date_triggers.scan_date_campaigns()
    assert entered(campaign) == sorted([f"date:{berlin.pk}:2026-02-02",
                                        f"date:{invalid.pk}:2026-02-02",
                                        f"date:{missing.pk}:2026-02-02"])


@pytest.mark.django_db
def test_an_attribute_set_the_same_day_fires_only_before_the_trigger_time(workspace,
                                                                         travel):
    campaign = date_campaign(workspace, recurrence="once", time="13:00")
    travel.move_to(datetime(2026, 7, 1, 9, 0, tzinfo=UTC))
    early = make_person(workspace, "early", renewal_at="2026-07-01")
    travel.move_to(datetime(2026, 7, 1, 12, 59, tzinfo=UTC))
    date_triggers.scan_date_campaigns()  # the worker then stops for two hours
    travel.move_to(datetime(2026, 7, 1, 14, 0, tzinfo=UTC))
    late = make_person(workspace, "late", renewal_at="2026-07-01")
    travel.move_to(datetime(2026, 7, 1, 15, 0, tzinfo=UTC))
    date_triggers.scan_date_campaigns()  # a late scan: 13:00 is in its window

    assert entered(campaign) == [f"date:{early.pk}:2026-07-01"]
    assert late.pk not in Journey.objects.values_list("person_id", flat=True)


@pytest.mark.django_db
def test_late_occurrences_fire_within_the_staleness_limit_only(workspace, travel):
    campaign = date_campaign(workspace, recurrence="once", time="09:00")
    travel.move_to(datetime(2026, 2, 1, 0, 0, tzinfo=UTC))
    old = make_person(workspace, "old", renewal_at="2026-02-01")
    recent = make_person(workspace, "recent", renewal_at="2026-02-02")
    date_triggers.scan_date_campaigns()
    # No scan runs from then on; at 08:30 on Feb 2 the worker is back. Feb 1 09:00 is
    # 23.5 hours late (fires); checked again at 09:30, it is 24.5 hours late.
    travel.move_to(datetime(2026, 2, 2, 10, 0, tzinfo=UTC))
    date_triggers.scan_date_campaigns()
    assert entered(campaign) == [f"date:{recent.pk}:2026-02-02"]
    assert old.pk not in Journey.objects.values_list("person_id", flat=True)

    travel.move_to(datetime(2026, 2, 3, 0, 0, tzinfo=UTC))
    younger = make_person(workspace, "younger", renewal_at="2026-02-03")
    travel.move_to(datetime(2026, 2, 4, 8, 59, tzinfo=UTC))  # 23 hours 59 late
    date_triggers.scan_date_campaigns()
    assert f"date:{younger.pk}:2026-02-03" in entered(campaign)


@pytest.mark.django_db
def test_a_rerun_or_a_rescanned_window_never_enters_twice(workspace, travel):
    campaign = date_campaign(workspace)
    ada = make_person(workspace, "ada", renewal_at="2026-02-05")
    travel.move_to(datetime(2026, 2, 5, 9, 0, tzinfo=UTC))

    assert tasks.scan_date_triggers() == 1
    assert date_triggers.scan_date_campaigns() == 0  # a rerun at the same moment
    # A scan that died after entering people leaves its window to be scanned again.
    DateTriggerScan.objects.update(scanned_until=datetime(2026, 2, 5, 8, 0, tzinfo=UTC))
    travel.move_to(datetime(2026, 2, 5, 9, 1, tzinfo=UTC))
    assert date_triggers.scan_date_campaigns() == 0
    assert entered(campaign) == [f"date:{ada.pk}:2026-02-05"]


@pytest.mark.django_db
def test_a_scan_held_by_another_is_left_alone(workspace, travel):
    campaign = date_campaign(workspace)
    make_person(workspace, "ada", renewal_at="2026-02-05")
    date_triggers.scan_date_campaigns()
    DateTriggerScan.objects.update(lease_until=datetime(2026, 2, 5, 9, 3, tzinfo=UTC))

    travel.move_to(datetime(2026, 2, 5, 9, 0, tzinfo=UTC))
    assert date_triggers.scan_date_campaigns() == 0
    travel.move_to(datetime(2026, 2, 5, 9, 4, tzinfo=UTC))  # its lease lapsed
    assert date_triggers.scan_date_campaigns() == 1
    assert len(entered(campaign)) == 1


@pytest.mark.django_db
def test_a_big_window_goes_on_where_it_stopped(workspace, travel, monkeypatch):
    monkeypatch.setattr(date_triggers, "BATCH_SIZE", 2)
    monkeypatch.setattr(date_triggers, "MAX_BATCHES", 1)
    campaign = date_campaign(workspace)
    crowd = [make_person(workspace, f"p{n}", renewal_at="2026-02-05") for n in range(5)]
    travel.move_to(datetime(2026, 2, 5, 9, 0, tzinfo=UTC))

    assert date_triggers.scan_date_campaigns() == 2
    scan = DateTriggerScan.objects.get(campaign=campaign)
    assert scan.cursor == crowd[1].pk and scan.window_end is not None
    travel.move_to(datetime(2026, 2, 5, 9, 1, tzinfo=UTC))
    assert date_triggers.scan_date_campaigns() == 2
    assert date_triggers.scan_date_campaigns() == 1
    assert len(entered(campaign)) == 5


@pytest.mark.django_db
def test_nothing_that_fell_due_before_the_start_and_nothing_after_the_stop(workspace,
                                                                          travel):
    make_person(workspace, "ada", renewal_at="2026-01-30")  # 09:00 today is past
    campaign = date_campaign(workspace)
    travel.move_to(datetime(2026, 1, 31, 12, 0, tzinfo=UTC))
    date_triggers.scan_date_campaigns()
    assert entered(campaign) == []

    make_person(workspace, "bob", renewal_at="2026-02-01")
    services.stop_campaign(campaign)
    travel.move_to(datetime(2026, 2, 1, 9, 0, tzinfo=UTC))
    date_triggers.scan_date_campaigns()
    assert entered(campaign) == []


@pytest.mark.django_db
def test_workspaces_are_kept_apart(workspace, travel):
    other = make_workspace("Other")
    ours, theirs = date_campaign(workspace), date_campaign(other, attribute="birthday")
    ada = make_person(workspace, "ada", renewal_at="2026-02-05", birthday="2026-02-05")
    bea = make_person(other, "bea", renewal_at="2026-02-05")
    cal = make_person(other, "cal", birthday="2026-02-05")
    travel.move_to(datetime(2026, 2, 5, 9, 0, tzinfo=UTC))

    date_triggers.scan_date_campaigns()

    assert entered(ours) == [f"date:{ada.pk}:2026-02-05"]
    assert entered(theirs) == [f"date:{cal.pk}:2026-02-05"]
    assert bea.pk not in Journey.objects.values_list("person_id", flat=True)


@pytest.mark.django_db
def test_the_campaigns_filters_are_checked_on_entry(workspace, travel):
    campaign = services.create_campaign(workspace, {
        "name": "Pro renewals",
        "trigger": {"date": {"attribute": "renewal_at", "recurrence": "monthly"}},
        "filters": {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}},
        "workflow": {"steps": []}})
    services.start_campaign(campaign)
    pro = make_person(workspace, "pro", renewal_at="2026-02-05", plan="pro")
    make_person(workspace, "free", renewal_at="2026-02-05", plan="free")
    travel.move_to(datetime(2026, 2, 5, 9, 0, tzinfo=UTC))

    date_triggers.scan_date_campaigns()

    assert entered(campaign) == [f"date:{pro.pk}:2026-02-05"]


@pytest.mark.django_db
def test_a_changed_date_is_a_new_occurrence(workspace, travel):
    campaign = date_campaign(workspace, recurrence="once")
    ada = make_person(workspace, "ada", renewal_at="2026-02-05")
    people.identify_person(workspace, people.Ref("id", "ada"), {"renewal_at": "2026-02-06"})
    travel.move_to(datetime(2026, 2, 5, 9, 0, tzinfo=UTC))
    date_triggers.scan_date_campaigns()
    travel.move_to(datetime(2026, 2, 6, 9, 0, tzinfo=UTC))
    date_triggers.scan_date_campaigns()

    assert entered(campaign) == [f"date:{ada.pk}:2026-02-06"]


@pytest.mark.django_db
def test_sql_selects_only_people_whose_date_and_zone_can_fire(workspace, travel):
    campaign = date_campaign(workspace, recurrence="yearly", timezone="person",
                             fallback_timezone="UTC")
    feb5 = int(datetime(1990, 2, 5, 12, tzinfo=UTC).timestamp())
    berlin = make_person(workspace, "berlin", renewal_at="1990-02-05",
                         timezone="Europe/Berlin")
    berlin_unix = make_person(workspace, "unix", renewal_at=feb5, timezone="Europe/Berlin")
    make_person(workspace, "text_unix", renewal_at=str(feb5), timezone="Asia/Tokyo")
    make_person(workspace, "other_day", renewal_at="1990-06-05", timezone="Europe/Berlin")
    make_person(workspace, "no_zone", renewal_at="1990-02-05")  # UTC: 09:00 is later
    make_person(workspace, "no_date", timezone="Europe/Berlin")
    trigger = date_triggers.dates.DateTrigger.from_definition(
        campaign.definition["trigger"]["date"])
    after = datetime(2026, 2, 5, 7, 59, tzinfo=UTC)  # 09:00 in Berlin, not in Tokyo

    candidates = date_triggers.Candidates(campaign, trigger, after,
                                          after + timedelta(minutes=1), now=after)

    assert [row[0] for row in candidates.batch(0)] == [berlin.pk, berlin_unix.pk]
    quiet = date_triggers.Candidates(campaign, trigger, after + timedelta(minutes=2),
                                     after + timedelta(minutes=3), now=after)
    assert quiet.keys == [] and quiet.batch(0) == []
