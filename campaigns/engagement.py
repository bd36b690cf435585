"""The ``engagement`` condition: what a person did with the messages sent to them.

``{"engagement": {"metric": "opened", "channel": "email", "within_days": 30,
"campaign_id": 5}}`` (DESIGN.md's condition contract) holds for people with a delivery
that was sent, delivered, opened, clicked, converted, bounced or unsubscribed (within
the last ``within_days`` days, of campaign ``campaign_id``, on ``channel``). Deliveries
are the person's by ``cio_id`` in their workspace, so the condition reads one index
(``delivery_person_idx``) in the correlated form and one set in the set-wide form.

Registered with the segments' condition registry from CampaignsConfig.ready(): segments
never import campaigns. Tracking announces each engagement it records as a change of the
person (``campaigns.tracking.announce_engagement``), so segments follow in real time.
"""

from datetime import timedelta
from typing import Any

from django import forms

from campaigns.models import Delivery
from segments.builder_forms import RowKind
from segments.conditions import Analysis, NodeKind

METRICS = ("sent", "delivered", "opened", "clicked", "converted", "bounced", "unsubscribed")
CHANNELS = tuple(Delivery.Kind.values)
KEYS = {"metric", "channel", "within_days", "campaign_id"}
# The moment each metric happened at: a delivery counts when it is set (and in range).
MOMENTS = {"sent": "sent_at", "delivered": "sent_at", "opened": "opened_at",
           "clicked": "clicked_at", "converted": "converted_at", "bounced": "bounced_at",
           "unsubscribed": "unsubscribed_at"}


def validate(validator, body: Any, here: str) -> None:
    if not isinstance(body, dict):
        validator.fail(here, "engagement needs a metric, as in {\"metric\": \"opened\"}")
        return
    unknown = set(body) - KEYS
    if unknown:
        validator.fail(here, f"unknown keys {sorted(unknown)}")
    if body.get("metric") not in METRICS:
        validator.fail(f"{here}.metric", "metric must be one of " + ", ".join(METRICS))
    if body.get("channel") is not None and body["channel"] not in CHANNELS:
        validator.fail(f"{here}.channel", "channel must be one of " + ", ".join(CHANNELS))
    within = body.get("within_days")
    if within is not None and (isinstance(within, bool) or not isinstance(within, int | float)
                               or not 0 < within <= 36_500):
        validator.fail(f"{here}.within_days",
                       "within_days must be a number above 0 and at most 36500 (100 years)")
    campaign = body.get("campaign_id")
    if campaign is not None and (isinstance(campaign, bool) or not isinstance(campaign, int)
                                 or campaign < 1):
        validator.fail(f"{here}.campaign_id", "campaign_id must be a campaign's id")


def depends(body: dict) -> Analysis:
    return Analysis(time_relative=body.get("within_days") is not None)


def _where(compiler, body: dict) -> list[str]:
    """Return the conditions a delivery row (``dl``) meets to count, but its person."""
    moment = MOMENTS[body["metric"]]
    where = [f"dl.{moment} IS NOT NULL"]
    if body["metric"] == "delivered":
        where.append(f"dl.state = {compiler.param(Delivery.State.SENT)}")
        where.append("dl.bounced_at IS NULL")
    if body.get("channel"):
        where.append(f"dl.kind = {compiler.param(body['channel'])}")
    if body.get("campaign_id") is not None:
        where.append(f"dl.campaign_id = {compiler.param(body['campaign_id'])}")
    if body.get("within_days") is not None:
        since = compiler.now - timedelta(days=body["within_days"])
        value = compiler.connection.ops.adapt_datetimefield_value(since)
        where.append(f"dl.{moment} >= {compiler.param(value)}")
    return where


def compile_correlated(compiler, body: dict) -> str:
    """This person's deliveries, through the (workspace, cio_id) index."""
    person = compiler.person
    mine = [f"dl.workspace_id = {person}.workspace_id", f"dl.cio_id = {person}.cio_id"]
    return (f"EXISTS (SELECT 1 FROM campaigns_delivery dl "
            f"WHERE {' AND '.join([*mine, *_where(compiler, body)])})")


def compile_set_wide(compiler, body: dict) -> str:
    """The cio_ids of the workspace's people with such a delivery, as one set."""
    if compiler.workspace_id is None:
        return compile_correlated(compiler, body)
    where = [f"dl.workspace_id = {compiler.param(compiler.workspace_id)}",
             "dl.cio_id IS NOT NULL", *_where(compiler, body)]
    return (f"{compiler.person}.cio_id IN (SELECT dl.cio_id FROM campaigns_delivery dl "
            f"WHERE {' AND '.join(where)})")


# --- the segment builder's row ------------------------------------------------------------


class EngagementRowForm(forms.Form):
    metric = forms.ChoiceField(choices=[(metric, metric) for metric in METRICS],
                               initial="opened", required=False)
    channel = forms.ChoiceField(choices=[("", "any message"), *Delivery.Kind.choices],
                                required=False)
    within_days = forms.CharField(required=False, widget=forms.TextInput(
        attrs={"size": 4, "placeholder": "any", "aria-label": "within days"}))
    campaign_id = forms.CharField(required=False, widget=forms.TextInput(
        attrs={"size": 6, "placeholder": "any", "aria-label": "campaign id"}))


def _number(text: str):
    """Return a whole number typed in a row, or the text as typed for the validator."""
    text = text.strip()
    return int(text) if text.isdigit() else text


def _row_node(row, here) -> dict:
    body: dict[str, Any] = {"metric": row.values["metric"]}
    if row.values["channel"]:
        body["channel"] = row.values["channel"]
    for name in ("within_days", "campaign_id"):
        if row.values[name].strip():
            body[name] = _number(row.values[name])
    return {"engagement": body}


def _row_values(body: Any) -> tuple[dict[str, str], list]:
    body = body if isinstance(body, dict) else {}

    def shown(value):
        return "" if value is None else str(value)

    return {"metric": str(body.get("metric") or "opened"),
            "channel": str(body.get("channel") or ""),
            "within_days": shown(body.get("within_days")),
            "campaign_id": shown(body.get("campaign_id"))}, []


ROW = RowKind(
    label="Engagement", template="campaigns/engagement_row.html", form=EngagementRowForm,
    to_node=_row_node, from_node=_row_values,
)

KIND = NodeKind("engagement", validate, compile_set_wide, correlated=compile_correlated,
                depends=depends, row="campaigns.engagement.ROW")

