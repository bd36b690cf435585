"""What a campaign did: journeys by state, and per step who entered, waits and was sent.

Every figure comes from a few aggregate queries (GROUP BY), never from a loop over
journeys: the App API's metrics and the campaign pages read them the same way.
"""

from django.db.models import Count, Q

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
