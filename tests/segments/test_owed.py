"""Evaluations owed after a change are durable: a failed enqueue, or a failing receiver
after commit, neither fails the request nor leaves a segment behind for good."""

import base64
import json
from datetime import timedelta

import pytest
import time_machine
from django.db import OperationalError
from django.utils import timezone
from django_q import tasks as django_q_tasks
from rest_framework.test import APIClient

from engage.schedules import SCHEDULES
from people.models import Person
from people.signals import people_changed
from segments import services, tasks
from segments.models import EvaluationTicket, Membership, PendingEvaluation
from tests.factories import make_workspace

PRO = {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}


@pytest.fixture
def workspace(transactional_db):
    """A workspace whose writes really commit, so after-commit work runs as in production."""
    return make_workspace("Acme")


@pytest.fixture
def pro(workspace):
    return services.create_segment(workspace, name="Pro", conditions_tree=PRO)


@pytest.fixture
def track(workspace):
    client = APIClient(raise_request_exception=False)
    credentials = f"{workspace.site_id}:{workspace.track_api_key}".encode()
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(credentials).decode())
    return client


@pytest.fixture
def enqueue_fails(monkeypatch):
    """Make queueing the evaluation task fail ``times`` times, as a dropped connection would."""
    real = django_q_tasks.async_task
    left = [0]

    def async_task(func, *args, **kwargs):
        if func == "segments.tasks.evaluate_pending" and left[0]:
            left[0] -= 1
            raise OperationalError("server closed the connection unexpectedly")
        return real(func, *args, **kwargs)

    monkeypatch.setattr(django_q_tasks, "async_task", async_task)

    def fail(times=1):
        left[0] = times
    return fail


def identify(track, customer_id, **attributes):
    return track.put(f"/api/v1/customers/{customer_id}", data=json.dumps(attributes),
                     content_type="application/json")


def members(segment):
    return set(Membership.objects.filter(segment=segment)
               .values_list("person__customer_id", flat=True))


def test_a_failed_enqueue_answers_200_and_the_sweeper_catches_up(track, workspace, pro,
                                                                 enqueue_fails):
    enqueue_fails(times=1)

    response = identify(track, "ada", plan="pro")

    assert response.status_code == 200  # stored, so answered as stored
    ada = Person.objects.get(workspace=workspace, customer_id="ada")
    assert members(pro) == set()
    assert list(PendingEvaluation.objects.values_list("person_id", flat=True)) == [ada.pk]
    assert not EvaluationTicket.objects.get(workspace=workspace).queued  # lowered again

    assert tasks.queue_owed_evaluations() == 1  # what the schedule runs

    assert members(pro) == {"ada"}
    assert not PendingEvaluation.objects.exists()


def test_the_next_change_picks_up_what_a_failed_enqueue_left(track, workspace, pro,
                                                            enqueue_fails):
    enqueue_fails(times=1)
    identify(track, "ada", plan="pro")
    assert members(pro) == set()

    assert identify(track, "bob", plan="pro").status_code == 200

    assert members(pro) == {"ada", "bob"}


def test_a_lost_task_behind_a_raised_ticket_is_queued_again_within_seconds(track, workspace,
                                                                          pro, monkeypatch):
    # The enqueue "succeeded" but the task never reached the queue: the ticket stays raised.
    monkeypatch.setattr(django_q_tasks, "async_task", lambda *args, **kwargs: None)
    identify(track, "ada", plan="pro")
    monkeypatch.undo()
    assert EvaluationTicket.objects.get(workspace=workspace).queued
    assert tasks.queue_owed_evaluations() == 0  # a task may still be on its way
    assert members(pro) == set()

    with time_machine.travel(timezone.now() + services.TICKET_STALE + timedelta(seconds=1)):
        assert tasks.queue_owed_evaluations() == 1

    assert members(pro) == {"ada"}


def test_a_failing_receiver_after_commit_still_answers_200(track, workspace, pro):
    def broken(sender, **kwargs):
        raise OperationalError("the connection died after commit")

    people_changed.connect(broken, dispatch_uid="test-broken-receiver")
    try:
        response = identify(track, "ada", plan="pro")
    finally:
        people_changed.disconnect(dispatch_uid="test-broken-receiver")

    assert response.status_code == 200
    assert Person.objects.filter(workspace=workspace, customer_id="ada").exists()
    assert members(pro) == {"ada"}


def test_the_sweeper_runs_every_minute():
    assert ("queue owed segment evaluations", "segments.tasks.queue_owed_evaluations",
            1) in SCHEDULES
