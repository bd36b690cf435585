"""What the tests of the campaign pages, drafts and test mode share: running campaigns
built through the services, and people carried through them by the engine."""

from datetime import UTC, datetime

from campaigns import engine, services
from campaigns.models import Delivery
from segments.services import create_segment

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
MAIL = {"id": "mail", "type": "email", "name": "Welcome mail", "from": "team@example.com",
        "to": "{{customer.email}}", "subject": "Hi {{customer.first_name | default: 'there'}}",
        "body_html": "<p>Hello {{customer.first_name | default: 'you'}}</p>"}
STEPS = [MAIL, {"id": "wait", "type": "delay", "duration": {"days": 2}},
         {"id": "tag", "type": "update_attributes", "set": {"stage": "done"}, "unset": []}]


def running(workspace, steps=STEPS, name="Welcome", **definition):
    """Create and start a segment-triggered campaign (future only) with these steps."""
    segment = create_segment(workspace, name=f"{name} segment")
    campaign = services.create_campaign(workspace, {
        "name": name, "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "exit": "never", "workflow": {"steps": steps}, **definition})
    return services.start_campaign(campaign, audience="future_only")


def enter(campaign, people):
    """Enter people into the campaign and advance their journeys as far as they go now."""
    engine.enter(campaign, [engine.Entry(f"p{p.pk}", p.pk, p.cio_id) for p in people])
    while engine.advance_due():
        pass


def delivery_of(campaign, person) -> Delivery:
    return Delivery.objects.get(campaign=campaign, cio_id=person.cio_id)
