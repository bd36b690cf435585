"""The segments trigger: people enter when they come to match the campaign's segments.

A running campaign reads the membership log of its trigger segments through the log's
consumer contract (``segments.log``): its cursor is kept on the campaign and moves in
the transaction that enters the people a page of the log made match, so a page is never
lost and never entered twice (entry keys make a replay harmless too). Who enters is
decided on the trigger and filters as they are when the page is read: someone who
entered a segment and left it again before the page was read does not enter.

The log is read when segments announce a change (``memberships_changed``), and by a
schedule every minute, which catches what an announcement failed to deliver. With the
frequency "every N days", that sweep also enters again whoever still matches N days
after their last journey began.
"""

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from campaigns import engine
from campaigns.models import Campaign, CampaignEntryJob, Journey
from engage import jobs
from engage.sql import in_ids
from segments.conditions import compile_tree
from segments.log import ENTERED, EXITED, read_changes
from segments.models import Membership, MembershipChange

PAGE = 2000  # log entries read a transaction
# People entered a transaction when a campaign starts (measured: 10,000 enter 100,000 in
# about 9 s on 2 cores, 2,000 in 14 s; bench/campaigns.py).
ENTER_BATCH = 10_000


def trigger_segments(campaign: Campaign) -> dict[int, bool]:
    """Return the campaign's trigger segments: segment id -> whether people must be in it."""
    trigger = campaign.definition["trigger"].get("segments") or {"segments": []}
    return {item["id"]: item["in"] for item in trigger["segments"]}


def log_head(campaign: Campaign) -> dict[str, int]:
    """Return a cursor at the end of the log of the campaign's trigger segments."""
    heads = (MembershipChange.objects.filter(workspace=campaign.workspace_id,
                                             segment_id__in=trigger_segments(campaign))
             .values("segment_id").annotate(last=Max("pk")))
    return {str(row["segment_id"]): row["last"] for row in heads}


def start_at_head(campaign: Campaign) -> None:
    """Have the campaign read only what the log gets from now on (future additions)."""
    Campaign.objects.filter(pk=campaign.pk).update(log_cursor=log_head(campaign))


def entry_key(campaign: Campaign, person_id: int, change_id: int) -> str:
    """Return the entry key of a person whose log entry ``change_id`` made them match.

    Frequency "once": one key per person ever. "rematch": one per time they come to
    match. "interval": at most one per N-day period.
    """
    frequency = campaign.definition["frequency"]
    if frequency["mode"] == "once":
        return f"p{person_id}"
    if frequency["mode"] == "interval":
        period = int(timezone.now().timestamp()) // (frequency["days"] * 86_400)
        return f"p{person_id}:i{period}"
    return f"p{person_id}:m{change_id}"


def trigger_tree(definition: dict) -> dict | None:
    """Return the condition tree (segment contract) a segments trigger and filters make."""
    trigger = definition["trigger"].get("segments")
    if trigger is None:
        return None
    parts = [{"segment": {"id": item["id"]}} if item["in"]
             else {"not": {"segment": {"id": item["id"]}}} for item in trigger["segments"]]
    tree = {"and" if trigger["match"] == "all" else "or": parts}
    if definition.get("filters"):
        tree = {"and": [tree, definition["filters"]]}
    return tree


def start_key(campaign: Campaign, person_id: int) -> str:
    """Return the entry key of ``person_id``, matching when the campaign (re)starts.

    With frequency "once", one key per person ever: nobody enters twice, whatever
    replays or restarts happen. Otherwise one key per start of the campaign.
    """
    return f"p{person_id}{start_key_suffix(campaign)}"


def start_key_suffix(campaign: Campaign) -> str:
    """What follows the person's id in ``start_key``."""
    if campaign.definition["frequency"]["mode"] == "once":
        return ""
    return f":s{int(campaign.started_at.timestamp())}"


def start_entering(campaign: Campaign) -> CampaignEntryJob:
    """Start entering everyone who matches the segments trigger now; return the job.

    Called in the transaction that starts the campaign. A start of more than one batch
    of candidates is entered by a worker, in batches, with progress; a smaller one is
    left to the caller to run at once after that transaction (``runs_at_once``,
    ``run_entry``). Either way the job keeps its place, so a process that dies mid-way
    loses nobody: the job is resumed.
    """
    job = CampaignEntryJob(workspace_id=campaign.workspace_id, campaign=campaign,
                           description=f"People matching campaign {campaign.pk} at its start")
    return jobs.start(job, candidates(campaign), queue_over=ENTER_BATCH)


def runs_at_once(job: CampaignEntryJob) -> bool:
    """Tell whether the caller that started ``job`` runs it (one batch at most)."""
    return 0 < job.total <= ENTER_BATCH


def candidates(campaign: Campaign) -> QuerySet:
    """The memberships naming the people who may match the trigger: those of the segments
    they must be in (with "all", one of them is enough). Walked by person (``walk_key``)
    along the memberships' unique index, not by reading the workspace's people."""
    sources = [segment_id for segment_id, inside in trigger_segments(campaign).items()
               if inside]
    if campaign.definition["trigger"]["segments"]["match"] == "all":
        sources = sources[:1]  # everyone who matches is in each of them: one is enough
    return Membership.objects.filter(segment_id__in=sources,
                                     segment__workspace_id=campaign.workspace_id)


def run_entry(job_id: int, *, max_batches: int | None = None) -> CampaignEntryJob | None:
    """Enter a start's matching people batch by batch; safe to run again after any stop."""
    return jobs.run(CampaignEntryJob, job_id, _enter_batch, max_batches=max_batches,
                    select_related=("campaign",), walk=lambda job: candidates(job.campaign))


def _enter_batch(job: CampaignEntryJob, person_pks: list[int]) -> None:
    campaign = job.campaign
    if campaign.state != Campaign.State.RUNNING:
        raise jobs.Stop(f"the campaign is {campaign.state}: the rest was not entered")
    job.entered += enter_matching(campaign, trigger_tree(campaign.definition), person_pks)


def enter_matching(campaign: Campaign, tree: dict, person_ids: list[int]) -> int:
    """Start a journey for each of ``person_ids`` whom ``tree`` matches now, keyed by
    ``start_key``; return how many started.

    One INSERT ... SELECT: the people are matched and their journeys written by the
    database, without a row of them coming to Python (``engine.enter`` does the same for
    entries made in Python).
    """
    if not person_ids:
        return 0
    compiled = compile_tree(tree, correlated=True, workspace_id=campaign.workspace_id)
    ids_sql, ids_params = in_ids("people_person.id", person_ids)
    suffix = start_key_suffix(campaign)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Journey._meta.db_table} ({engine.JOURNEY_COLUMNS}) "
            "SELECT %s, %s, people_person.id, people_person.cio_id, "
            "'p' || people_person.id || %s, %s, '', '', '{}', 0, %s, '{}', %s "
            "FROM people_person "
            f"WHERE people_person.workspace_id = %s AND {ids_sql} AND ({compiled.sql}) "
            f"ORDER BY people_person.id ON CONFLICT {engine.ENTRY_INDEX} DO NOTHING",
            [campaign.workspace_id, campaign.pk, suffix, Journey.State.ACTIVE, now, now,
             campaign.workspace_id, *ids_params, *compiled.params])
        return cursor.rowcount


def matching_among(campaign: Campaign, tree: dict, person_ids: list[int]
                   ) -> list[tuple[int, str]]:
    """Return (id, cio_id) of the people among ``person_ids`` whom ``tree`` matches now.

    One statement restricted to those people (the correlated form of the condition), so
    its cost follows their number, not the workspace's.
    """
    if not person_ids:
        return []
    compiled = compile_tree(tree, correlated=True, workspace_id=campaign.workspace_id)
    ids_sql, ids_params = in_ids("people_person.id", person_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT people_person.id, people_person.cio_id FROM people_person "
            f"WHERE people_person.workspace_id = %s AND {ids_sql} AND ({compiled.sql})",
            [campaign.workspace_id, *ids_params, *compiled.params])
        return cursor.fetchall()


def enter_from_log(campaign_id: int) -> int:
    """Read the campaign's trigger segments' log to its end, entering whoever came to match."""
    entered = 0
    while True:
        with transaction.atomic():
            campaign = (Campaign.objects.select_for_update(skip_locked=True)
                        .filter(pk=campaign_id, state=Campaign.State.RUNNING,
                                trigger=Campaign.Trigger.SEGMENTS).first())
            if campaign is None:
                return entered  # not running, or another worker is reading its log now
            wanted = trigger_segments(campaign)
            page = read_changes(campaign.workspace, wanted, after=campaign.log_cursor,
                                limit=PAGE)
            if not page.changes:
                return entered
            # Entering a segment one must be in, or leaving one one must not be in.
            came = {}
            for change in page.changes:
                if (change.change == ENTERED) == wanted[change.segment_id]:
                    came[change.person_id] = change.pk
                elif change.change == EXITED and wanted[change.segment_id]:
                    came.pop(change.person_id, None)
            matching = matching_among(campaign, trigger_tree(campaign.definition),
                                      list(came))
            entered += engine.enter(campaign, [
                engine.Entry(entry_key(campaign, pk, came[pk]), pk, cio_id)
                for pk, cio_id in matching])
            Campaign.objects.filter(pk=campaign.pk).update(
                log_cursor={str(key): value for key, value in page.cursor.items()})


def enter_for_workspace(workspace_id: int, segment_ids: list[int]) -> int:
    """Read the log for every running campaign triggered by one of ``segment_ids``."""
    entered = 0
    for campaign in Campaign.objects.filter(workspace_id=workspace_id,
                                            state=Campaign.State.RUNNING,
                                            trigger=Campaign.Trigger.SEGMENTS):
        if set(trigger_segments(campaign)) & set(segment_ids):
            entered += enter_from_log(campaign.pk)
    return entered


def enter_for_all() -> int:
    """Read the log for every running segment-triggered campaign, and let people who still
    match re-enter campaigns with an interval (the schedule's sweep)."""
    entered = 0
    for campaign in Campaign.objects.filter(state=Campaign.State.RUNNING,
                                            trigger=Campaign.Trigger.SEGMENTS):
        entered += enter_from_log(campaign.pk)
        if campaign.definition["frequency"]["mode"] == "interval":
            entered += reenter_after_interval(campaign)
    return entered


def reenter_after_interval(campaign: Campaign) -> int:
    """Enter again the people who still match N days after their last journey began.

    Only people who were in the campaign are candidates (found from its journeys, not by
    reading every person); someone in an active journey waits for it to end. The key is
    the previous entry's moment, so a rerun enters nobody twice.
    """
    days = campaign.definition["frequency"]["days"]
    since = timezone.now() - timedelta(days=days)
    last = (Journey.objects.filter(campaign=campaign, person__isnull=False)
            .values("person_id").annotate(last=Max("entered_at")).filter(last__lte=since)
            .exclude(person_id__in=Journey.objects.filter(
                campaign=campaign, state=Journey.State.ACTIVE).values("person_id")))
    due = {row["person_id"]: row["last"] for row in last[:PAGE]}
    if not due:
        return 0
    matching = matching_among(campaign, trigger_tree(campaign.definition), list(due))
    return engine.enter(campaign, [
        engine.Entry(f"p{pk}:r{int(due[pk].timestamp())}", pk, cio_id)
        for pk, cio_id in matching])
