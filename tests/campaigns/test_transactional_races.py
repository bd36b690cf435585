"""Transactional sends racing each other (PostgreSQL): one delivery per idempotency key,
one person for an identifier first seen by several sends at once."""

import pytest
from django.db import connection

from campaigns import transactional
from campaigns.models import Delivery
from people.models import Person
from tests.people.test_suppression_races import race

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="races need several connections to one shared database"),
]

ROUNDS = 5
BODY = {"from": "team@example.com", "subject": "Code", "body": "<p>{{trigger.code}}</p>"}


def test_retries_racing_with_one_idempotency_key_write_one_delivery(workspace):
    for round_ in range(ROUNDS):
        answers = []
        body = {**BODY, "identifiers": {"email": f"new{round_}@example.com"}}

        def send(body=body, key=f"key-{round_}", answers=answers):
            answers.append(transactional.send_email(workspace, body, idempotency_key=key))

        errors = race(*[send] * 4)

        assert errors == []
        assert len({delivery.pk for delivery, _ in answers}) == 1
        assert sorted(created for _, created in answers) == [False, False, False, True]
        assert Delivery.objects.filter(idempotency_key=f"key-{round_}").count() == 1
        assert Person.objects.filter(email=f"new{round_}@example.com").count() == 1
