"""What a campaign did: journeys by state, and per step who entered, waits and was sent.

Every figure comes from a few aggregate queries (GROUP BY), never from a loop over
journeys: the App API's metrics and the campaign pages read them the same way.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import CharField, Count, Q, Value
from django.db.models.functions import TruncDate
from django.utils import timezone

from campaigns.definition import iter_steps
from campaigns.models import Campaign, Delivery, Journey, JourneyStep

JOURNEY_METRICS = ("entered", "active", "finished", "exited", "converted")
STEP_METRICS = ("entered", "waiting", "sent", "drafted", "failed", "unknown", "skipped",
                "opened", "clicked", "bounced", "unsubscribed", "converted")
# Deliveries counted by their state, and by the moment something happened to them.
DELIVERY_STATES = ("sent", "drafted", "failed", "unknown", "skipped")
DELIVERY_MOMENTS = ("opened", "clicked", "bounced", "unsubscribed", "converted")

_JOURNEY_COUNTS = {
    "entered": Count("pk"),
    "active": Count("pk", filter=Q(state=Journey.State.ACTIVE)),
    "finished": Count("pk", filter=Q(state=Journey.State.FINISHED)),
    "exited": Count("pk", filter=Q(state=Journey.State.EXITED)),
    "converted": Count("pk", filter=Q(converted_at__isnull=False)),
}
_DELIVERY_COUNTS = {
    **{state: Count("pk", filter=Q(state=state)) for state in DELIVERY_STATES},
    **{moment: Count("pk", filter=Q(**{f"{moment}_at__isnull": False}))
       for moment in DELIVERY_MOMENTS},
}


def journey_totals(campaign_ids) -> dict[int, dict[str, int]]:
    """Return journeys entered, active, finished, exited and converted per campaign id."""
    totals = {pk: dict.fromkeys(JOURNEY_METRICS, 0) for pk in campaign_ids}
    rows = (Journey.objects.filter(campaign_id__in=list(totals)).order_by()
            .values("campaign_id").annotate(**_JOURNEY_COUNTS))
    for row in rows:
        totals[row.pop("campaign_id")] = row
    return totals


def step_metrics(campaign: Campaign) -> dict[str, dict[str, int]]:
    """Return each step's figures, in the workflow's order, then steps removed since.

    "entered": journeys whose log has a row for the step; "waiting": active journeys at
    it; the rest count the step's deliveries by state or by what happened to them.
    """
    steps = {step["id"]: dict.fromkeys(STEP_METRICS, 0)
             for _, step in iter_steps(campaign.definition["workflow"]["steps"])}

    def add(rows):
        for row in rows:
            figures = steps.setdefault(row.pop("step_id"), dict.fromkeys(STEP_METRICS, 0))
            figures.update(row)

    add(JourneyStep.objects.filter(journey__campaign=campaign).order_by().values("step_id")
        .annotate(entered=Count("journey_id", distinct=True)))
    add(Journey.objects.filter(campaign=campaign, state=Journey.State.ACTIVE)
        .exclude(step_id="").order_by().values("step_id").annotate(waiting=Count("pk")))
    add(Delivery.objects.filter(campaign=campaign).order_by().values("step_id")
        .annotate(**_DELIVERY_COUNTS))
    return steps


def campaign_metrics(campaign: Campaign) -> dict:
    """Return the campaign's journey figures with its per-step figures under "steps"."""
    return {**journey_totals([campaign.pk])[campaign.pk], "steps": step_metrics(campaign)}


# --- over time, per step, per person: what the campaign pages show ----------------------

DAILY_METRICS = ("entered", "sent", "opened", "clicked", "converted")
DAILY_DAYS = 30
# Where each daily figure is read: (model, the moment it counts).
_DAILY_SOURCES = {
    "entered": (Journey, "entered_at"),
    "sent": (Delivery, "sent_at"),
    "opened": (Delivery, "opened_at"),
    "clicked": (Delivery, "clicked_at"),
    "converted": (Journey, "converted_at"),
}


def daily_counts(campaign: Campaign, *, days: int = DAILY_DAYS, now: datetime | None = None,
                 zone: str | None = None) -> list[dict]:
    """Return one row per day of the last ``days`` (oldest first): journeys entered and
    messages sent, opened, clicked and converted that day, in the workspace's time zone.

    One statement: a grouped count per figure, glued with UNION ALL.
    """
    tz = ZoneInfo(zone or campaign.workspace.timezone or "UTC")
    today = (now or timezone.now()).astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, time.min, tzinfo=tz)
    parts = []
    for metric, (model, moment) in _DAILY_SOURCES.items():
        parts.append(
            model.objects.filter(campaign=campaign, **{f"{moment}__gte": since}).order_by()
            .annotate(day=TruncDate(moment, tzinfo=tz)).values("day")
            .annotate(metric=Value(metric, output_field=CharField()), count=Count("pk"))
            .values_list("day", "metric", "count"))
    series = {first + timedelta(days=n): dict.fromkeys(DAILY_METRICS, 0) for n in range(days)}
    for day, metric, count in parts[0].union(*parts[1:], all=True):
        if isinstance(day, str):  # SQLite hands the date back as text inside a UNION
            day = date.fromisoformat(day)
        if day in series:
            series[day][metric] += count
    return [{"day": day, **figures} for day, figures in series.items()]


def step_rows(campaign: Campaign, figures: dict[str, dict[str, int]] | None = None
              ) -> list[dict]:
    """Return the workflow's steps in order, each with its depth in the block tree and
    its figures (``step_metrics``), then steps removed since that still have figures.

    What the overview's table, its CSV and the workflow canvas show per step.
    """
    figures = step_metrics(campaign) if figures is None else figures
    rows = []
    for place, step in iter_steps(campaign.definition["workflow"]["steps"]):
        rows.append({"id": step["id"], "type": step["type"],
                     "name": step.get("name") or step["type"].replace("_", " ").capitalize(),
                     "depth": place.count(".paths["), "removed": False,
                     "metrics": figures.get(step["id"], dict.fromkeys(STEP_METRICS, 0))})
    known = {row["id"] for row in rows}
    rows.extend({"id": step_id, "type": "", "name": "(removed step)", "depth": 0,
                 "removed": True, "metrics": values}
                for step_id, values in figures.items() if step_id not in known)
    return rows


def journeys_at_step(campaign: Campaign, step_id: str):
    """Return the active journeys waiting at a step (a QuerySet, for keyset pages)."""
    return (Journey.objects.filter(campaign=campaign, state=Journey.State.ACTIVE,
                                   step_id=step_id).select_related("person"))


def journeys_of_person(workspace, person_id: int, *, limit: int = 100) -> list[Journey]:
    """Return a person's journeys, newest first, each with ``path``: the steps it took in
    order as (step id, step name, outcome, when); two queries whatever the number."""
    journeys = list(Journey.objects.filter(workspace=workspace, person_id=person_id)
                    .select_related("campaign").order_by("-entered_at", "-pk")[:limit])
    paths: dict[int, list] = {journey.pk: [] for journey in journeys}
    for row in (JourneyStep.objects.filter(journey_id__in=list(paths)).order_by("journey_id",
                                                                                 "seq")):
        paths[row.journey_id].append(row)
    for journey in journeys:
        names = {step["id"]: step.get("name") or step["type"].replace("_", " ").capitalize()
                 for _, step in iter_steps(journey.campaign.definition["workflow"]["steps"])}
        journey.path = [(row.step_id, names.get(row.step_id, row.step_type), row.outcome,
                         row.created_at, row.data.get("delivery")) for row in paths[journey.pk]]
        journey.step_name = names.get(journey.step_id, journey.step_id)
    return journeys
