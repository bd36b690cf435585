"""Entering people into date-triggered campaigns as their occurrences fall due.

A scheduled scan (``campaigns.tasks.scan_date_triggers``, every minute) looks, for each
running date campaign, at the window of time since its last scan: (scanned_until, now].
Each person with an occurrence (``campaigns.dates``) firing in that window enters with
the key ``date:<person id>:<occurrence date>``, so a rerun, an overlapping scan or a
window scanned twice after a crash never enters anyone twice.

- Late occurrences (the scan did not run for a while: no worker) still fire when at most
  ``STALENESS`` late, never older ones; nor any that fell due before the campaign started.
- Customer.io's same-day rule: an occurrence fires only if the person's attributes
  already held it at its fire time. Engage reads that from the person's ``updated_at``
  (it moves only when the person really changes): a person updated after the fire time
  does not fire that occurrence in a late scan. On time, the scan sees the window just
  past, so an attribute set at 14:00 to today's date never fires today's 13:00.
  (Trade-off: a late scan also skips a person whose *other* attributes changed after the
  fire time.)

Scale: nobody is read into Python unless an occurrence can fire in the window. The
window says which occurrence dates can fire (for a fixed zone: none in most minutes, so
no query at all) and, for the person's zone, in which IANA zones the time of day falls
in the window; SQL then selects only people whose attribute's written date (text, or
the UTC date of unix seconds) is one of those dates (widened by two days for zones) and,
where it narrows, whose ``timezone`` is one of those zones, in batches by primary key. A
window cut short keeps its place (``DateTriggerScan.cursor``) and goes on in the next
scan.
"""

import json
import logging
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from campaigns import dates, engine
from campaigns.models import Campaign, DateTriggerScan
from engage.sql import in_values
from people.models import Person
from segments import conditions

log = logging.getLogger(__name__)

# Occurrences later than this (no scan ran: a dead worker) are not fired any more.
STALENESS = timedelta(hours=24)
BATCH_SIZE = 2000
# Batches one scan does per campaign before it lets the others go first.
MAX_BATCHES = 50
# A scan holds a campaign this long; a scan that died lets it go when it lapses.
LEASE = timedelta(minutes=5)
# A value's written date and its date in a person's zone differ by up to two days
# (an ISO offset of -12:00 seen from +14:00).
SLACK_DAYS = 2
TINY = timedelta(microseconds=1)


def scan_date_campaigns(*, now: datetime | None = None) -> int:
    """Enter the people whose date occurrences fell due; return how many entered."""
    now = now or timezone.now()
    entered = 0
    running = Campaign.objects.entering().filter(trigger=Campaign.Trigger.DATE).order_by("pk")
    for campaign in running:
        try:
            entered += scan_campaign(campaign, now=now)
        except Exception:  # one campaign's fault must not stop the others
            log.exception("date trigger scan of campaign %s failed", campaign.pk)
    return entered


def scan_campaign(campaign: Campaign, *, now: datetime | None = None) -> int:
    """Scan one running date campaign's window up to ``now``; return how many entered."""
    now = now or timezone.now()
    started = campaign.started_at or now
    DateTriggerScan.objects.get_or_create(campaign=campaign,
                                          defaults={"scanned_until": started})
    claimed = DateTriggerScan.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=campaign.pk,
    ).update(lease_until=now + LEASE)
    if not claimed:
        return 0  # another scan is at it
    scan = DateTriggerScan.objects.get(pk=campaign.pk)
    if scan.window_end is None:  # a new window since the last one
        scan.scanned_until = max(scan.scanned_until, started, now - STALENESS)
        scan.window_end, scan.cursor = now, 0
    after = max(scan.scanned_until, started)
    until = scan.window_end
    trigger = dates.DateTrigger.from_definition(campaign.definition["trigger"]["date"])
    candidates = Candidates(campaign, trigger, after, until, now=now)
    entered = 0
    for _ in range(MAX_BATCHES):
        batch = candidates.batch(scan.cursor)
        if not batch:
            DateTriggerScan.objects.filter(pk=campaign.pk).update(
                scanned_until=until, window_end=None, cursor=0, lease_until=None)
            return entered
        with transaction.atomic():
            entered += engine.enter(campaign, candidates.due(batch, now=now), now=now)
            scan.cursor = batch[-1][0]
            DateTriggerScan.objects.filter(pk=campaign.pk).update(
                scanned_until=scan.scanned_until, window_end=until, cursor=scan.cursor,
                lease_until=timezone.now() + LEASE)
    DateTriggerScan.objects.filter(pk=campaign.pk).update(lease_until=None)
    return entered


class Candidates:
    """The people of a campaign's workspace who may have an occurrence in a window."""

    def __init__(self, campaign: Campaign, trigger: dates.DateTrigger, after: datetime,
                 until: datetime, *, now: datetime):
        self.campaign = campaign
        self.trigger = trigger
        self.after, self.until = after, until
        self.keys, self.zones = self.plan()
        self.where, self.params = self.sql(now) if self.keys else ("", [])

    def plan(self) -> tuple[list, set[str] | None]:
        """Return the occurrence dates that can fire in the window, and the zones (None:
        any zone) people must be in for them."""
        trigger = self.trigger
        if not self.after < self.until:
            return [], None
        if not trigger.per_person_zone:
            return dates.fires_between(trigger, dates.zone(trigger.timezone), self.after,
                                       self.until), None
        firing = dates.zones_firing(trigger, self.after, self.until)
        keys = sorted({key for name in firing for key in dates.fires_between(
            trigger, dates.zone(name), self.after, self.until)})
        # People without a known zone fire in the fallback: select by zone only when the
        # fallback does not fire now.
        narrow = trigger.fallback_timezone not in firing
        return keys, firing if narrow else None

    def sql(self, now: datetime) -> tuple[str, list]:
        """Return the SQL condition over ``people_person`` that narrows to candidates."""
        steps = conditions.parse_path(self.trigger.attribute)
        if any(step.kind == "any" for step in steps):
            return "", []
        compiler = conditions.Compiler(now=now, workspace_id=self.campaign.workspace_id)
        ref = compiler.json_ref("people_person.attributes", steps)
        number, kind, text = ref.number_sql(), ref.type_sql(), ref.text_sql()
        bounds = f"{number} BETWEEN {dates.MIN_UNIX} AND {dates.MAX_UNIX}"
        if connection.vendor == "postgresql":
            utc_date = (f"to_char(to_timestamp(CAST({number} AS double precision)) "
                        "AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
        else:
            utc_date = f"strftime('%%Y-%%m-%%d', {number}, 'unixepoch')"
        written = (f"(CASE WHEN {bounds} THEN {utc_date} "
                   f"WHEN {kind} = 'string' THEN substr({text}, 1, 10) END)")
        part = {"once": written, "yearly": f"substr({written}, 6, 5)",
                "monthly": f"substr({written}, 9, 2)"}[self.trigger.recurrence]
        patterns = sorted(dates.written_dates(self.trigger, self.keys, slack_days=SLACK_DAYS))
        where, params = in_values(part, patterns)
        clauses, all_params = [where], list(params)
        if self.zones is not None:
            zone_ref = compiler.json_ref("people_person.attributes",
                                         conditions.parse_path("timezone"))
            where, params = in_values(zone_ref.text_sql(), sorted(self.zones))
            clauses.append(where)
            all_params += params
        filters = self.campaign.definition.get("filters")
        if filters:
            compiled = conditions.compile_tree(filters, now=now,
                                               workspace_id=self.campaign.workspace_id)
            clauses.append(f"({compiled.sql})")
            all_params += compiled.params
        return " AND ".join(f"({clause})" for clause in clauses), all_params

    def batch(self, cursor: int) -> list[tuple]:
        """Return the next candidates after person id ``cursor``: (id, cio_id, attributes,
        updated_at)."""
        if not self.where:
            return []
        people = (Person.objects.filter(workspace=self.campaign.workspace_id, pk__gt=cursor)
                  .filter(RawSQL(self.where, self.params, output_field=BooleanField()))
                  .order_by("pk").values_list("pk", "cio_id", "attributes", "updated_at"))
        return list(people[:BATCH_SIZE])

    def due(self, batch: list[tuple], *, now: datetime) -> list[engine.Entry]:
        """Return the entries of the candidates whose occurrence fires in the window."""
        entries = []
        oldest = now - STALENESS
        for person_id, cio_id, attributes, updated_at in batch:
            if isinstance(attributes, str):
                attributes = json.loads(attributes)
            found = dates.occurrence_for(self.trigger, attributes, self.after + TINY)
            if found is None or found.fire_at > self.until or found.fire_at < oldest:
                continue
            if updated_at > found.fire_at:
                continue  # the attribute did not hold this date when it fell due
            key = found.key.isoformat()
            entries.append(engine.Entry(
                f"date:{person_id}:{key}", person_id, cio_id,
                {"date": {"attribute": self.trigger.attribute, "occurrence": key,
                          "fire_at": found.fire_at.isoformat()}}))
        return entries
