"""Suppression, deletion and writes for the same person at the same moment (PostgreSQL).

Each round starts several threads, each on its own database connection, at one barrier:
whatever order the database serialises them in, a suppressed identifier is never stored
again, nothing is left pointing at a deleted person, and no call fails.
"""

import threading

import pytest
from django.db import connection, connections
from rest_framework.test import APIClient

from people import batch, services
from people.models import Device, Event, Person, Suppression
from tests.api.conftest import basic
from tests.factories import make_person

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="races need several connections to one shared database"),
]

ROUNDS = 30


def race(*calls):
    """Run ``calls`` in threads released together; return what each raised, if anything."""
    barrier = threading.Barrier(len(calls))
    errors = []

    def run(call):
        try:
            barrier.wait(timeout=10)
            call()
        except Exception as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def assert_nothing_orphaned(workspace):
    assert not Event.objects.filter(workspace=workspace, person__isnull=True,
                                    anonymous_id__isnull=True).exists()
    live = Person.objects.filter(workspace=workspace).values("pk")
    assert not Event.objects.filter(workspace=workspace).exclude(person__in=live).exclude(
        person__isnull=True).exists()
    assert not Device.objects.filter(workspace=workspace).exclude(person__in=live).exists()


def assert_suppressed_and_absent(workspace, kind, value):
    assert Suppression.objects.filter(workspace=workspace, identifier_type=kind,
                                      value=value).exists()
    column = {"id": "customer_id", "email": "email_key"}[kind]
    assert not Person.objects.filter(workspace=workspace, **{column: value}).exists()


def test_suppress_racing_events_and_devices_never_recreates_the_id(workspace):
    for n in range(ROUNDS):
        suppress_racing_events_and_devices(workspace, n)
    assert_nothing_orphaned(workspace)


def suppress_racing_events_and_devices(workspace, n):
    customer_id = f"racer-{n}"
    if n % 2:
        make_person(workspace, customer_id, plan="pro")
    ref = services.Ref("id", customer_id)
    errors = race(
        lambda: services.suppress_identifier(workspace, ref),
        lambda: services.track_event(workspace, ref, name="login"),
        lambda: services.add_device(workspace, ref, token=f"token-{n}", platform="ios"),
        lambda: services.identify_person(workspace, ref, {"plan": "free"}),
    )
    assert errors == []
    assert_suppressed_and_absent(workspace, "id", customer_id)


def test_suppress_by_email_racing_identify_never_recreates_the_email(workspace):
    for n in range(ROUNDS):
        suppress_by_email_racing_identify(workspace, n)
    assert_nothing_orphaned(workspace)


def suppress_by_email_racing_identify(workspace, n):
    email = f"racer-{n}@example.com"
    errors = race(
        lambda: services.suppress_identifier(workspace, services.Ref("email", email)),
        lambda: services.identify_person(workspace, services.Ref("id", f"id-{n}"),
                                         {"email": email}),
        lambda: services.track_event(workspace, services.Ref("email", email), name="open"),
    )
    assert errors == []
    assert_suppressed_and_absent(workspace, "email", email)


def test_suppress_racing_a_v2_batch_never_recreates_the_id(workspace):
    for n in range(ROUNDS):
        suppress_racing_a_batch(workspace, n)
    assert_nothing_orphaned(workspace)


def suppress_racing_a_batch(workspace, n):
    customer_id = f"batch-{n}"
    operations = [
        {"type": "person", "action": "identify", "identifiers": {"id": customer_id},
         "attributes": {"plan": "pro"}},
        {"type": "person", "action": "event", "identifiers": {"id": customer_id},
         "name": "login"},
    ]
    errors = race(
        lambda: services.suppress_identifier(workspace, services.Ref("id", customer_id)),
        lambda: batch.apply_batch(workspace, operations),
    )
    assert errors == []
    assert_suppressed_and_absent(workspace, "id", customer_id)


def test_suppress_racing_a_merge_suppresses_the_moved_id(workspace):
    for n in range(ROUNDS):
        suppress_racing_a_merge(workspace, n)
    assert_nothing_orphaned(workspace)


def suppress_racing_a_merge(workspace, n):
    make_person(workspace, f"primary-{n}")
    secondary = make_person(workspace, email=f"secondary-{n}@example.com")
    services.identify_person(workspace, services.Ref("cio_id", secondary.cio_id),
                             {"id": f"secondary-{n}"})
    errors = race(
        lambda: services.suppress_identifier(workspace, services.Ref("id", f"secondary-{n}")),
        lambda: services.merge_people(workspace, primary=services.Ref("id", f"primary-{n}"),
                                      secondary=services.Ref("id", f"secondary-{n}")),
    )
    assert errors == []
    assert_suppressed_and_absent(workspace, "id", f"secondary-{n}")


@pytest.fixture
def track(workspace):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(workspace.site_id, workspace.track_api_key))
    return client


@pytest.mark.parametrize("remover", ["delete", "suppress"])
def test_events_and_devices_racing_a_removal_never_answer_500(workspace, track, remover):
    statuses = []

    def call(method, path, body=None):
        response = getattr(track, method)(path, body, format="json")
        statuses.append(response.status_code)

    def one_round(n):
        customer_id = f"person-{n}"
        make_person(workspace, customer_id, plan="pro")
        removal = (("delete", f"/api/v1/customers/{customer_id}") if remover == "delete"
                   else ("post", f"/api/v1/customers/{customer_id}/suppress"))
        errors = race(
            lambda: call(*removal),
            lambda: call("post", f"/api/v1/customers/{customer_id}/events", {"name": "login"}),
            lambda: call("put", f"/api/v1/customers/{customer_id}/devices",
                         {"device": {"id": f"token-{n}", "platform": "ios"}}),
        )
        assert errors == []
        if remover == "suppress":
            assert_suppressed_and_absent(workspace, "id", customer_id)

    for n in range(ROUNDS):
        one_round(n)
    assert set(statuses) == {200}
    assert_nothing_orphaned(workspace)


def test_bulk_delete_and_suppress_racing_events_never_recreates_the_ids(workspace):
    for n in range(ROUNDS):
        bulk_suppress_racing_events(workspace, n)
    assert_nothing_orphaned(workspace)


def bulk_suppress_racing_events(workspace, n):
    ids = [f"bulk-{n}-{i}" for i in range(3)]
    for customer_id in ids:
        make_person(workspace, customer_id)
    people = Person.objects.filter(workspace=workspace, customer_id__in=ids)
    errors = race(
        lambda: services.delete_people(workspace, people, suppress=True),
        *[lambda customer_id=customer_id: services.track_event(
            workspace, services.Ref("id", customer_id), name="login") for customer_id in ids],
    )
    assert errors == []
    for customer_id in ids:
        assert_suppressed_and_absent(workspace, "id", customer_id)


def test_anonymous_events_racing_a_deletion_of_their_person_are_kept_anonymous(workspace):
    for n in range(ROUNDS):
        anonymous_event_racing_a_deletion(workspace, n)
    assert_nothing_orphaned(workspace)


def anonymous_event_racing_a_deletion(workspace, n):
    services.track_anonymous_event(workspace, anonymous_id=f"anon-{n}", name="visit")
    services.identify_person(workspace, services.Ref("id", f"known-{n}"),
                             {"anonymous_id": f"anon-{n}"})
    errors = race(
        lambda: services.delete_person(workspace, services.Ref("id", f"known-{n}")),
        lambda: services.track_anonymous_event(workspace, anonymous_id=f"anon-{n}",
                                               name="visit again"),
    )
    assert errors == []
    assert not Person.objects.filter(workspace=workspace, customer_id=f"known-{n}").exists()
