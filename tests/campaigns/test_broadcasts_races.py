"""Broadcast triggers racing each other (PostgreSQL): the 10-second rule holds."""

import pytest
from django.db import connection

from campaigns import broadcasts, services
from campaigns.models import BroadcastTrigger, Journey
from tests.factories import make_person
from tests.people.test_suppression_races import race

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="races need several connections to one shared database"),
]

MAIL = {"id": "news", "type": "email", "name": "News", "from": "news@example.com",
        "subject": "News", "body_html": "<p>News</p>"}


def test_triggers_racing_for_one_broadcast_let_one_through(workspace):
    for n in range(3):
        make_person(workspace, f"u{n}", email=f"u{n}@example.com")
    campaign = services.start_campaign(services.create_campaign(workspace, {
        "name": "News", "trigger": {"api": {}}, "workflow": {"steps": [MAIL]}}))

    errors = race(*[lambda: broadcasts.trigger_broadcast(campaign, {"data": {"n": 1}})] * 4)

    assert len(errors) == 3 and all(isinstance(e, broadcasts.RateLimited) for e in errors)
    job = BroadcastTrigger.objects.get(campaign=campaign)
    assert (job.state, job.entered) == ("done", 3)
    assert Journey.objects.filter(campaign=campaign).count() == 3
