"""Webhook answers mapped into people's attributes: a batch at once, each delivery's rules kept."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import webhooks
from campaigns.models import Delivery
from people import services as people
from people.models import Activity, Person
from tests.campaigns.test_webhooks import enter, hook, running
from tests.factories import make_person, make_workspace
from tests.webhook_server import Reply

pytestmark = pytest.mark.django_db

MAPPING = [{"path": "plan", "attribute": "plan"},
           {"path": "seats", "attribute": "billing.seats"}]


@pytest.fixture
def allowed(settings, webhook_server):
    settings.ENGAGE_WEBHOOK_ALLOWED_HOSTS = [webhook_server.host]
    settings.ENGAGE_WEBHOOK_ALLOW_PRIVATE = False
    settings.ENGAGE_WEBHOOK_CONCURRENCY = 4
    return webhook_server


def mapping_campaign(workspace, server):
    return running(workspace, [hook(server.url + "/map/{{customer.id}}", response=MAPPING)])


def send_batch(*, before_recording=lambda: None) -> dict[int, str]:
    """Claim, render and call a batch as ``send_due_webhooks`` does, run
    ``before_recording``, then record the outcomes; return each delivery's new state."""
    now = timezone.now()
    claimed = webhooks.claim_due(now=now)
    people_of = webhooks.people_by_delivery(claimed)
    outcomes = []
    for delivery in claimed:
        person = people_of.get(delivery.pk)
        call = webhooks.prepare(delivery, now=now, person=person)
        outcomes.append(webhooks.Outcome(delivery, call, webhooks.send(call), person))
    before_recording()
    return webhooks.record_outcomes(outcomes, now=now)


def delivery_of(person) -> Delivery:
    return Delivery.objects.get(journey__person_id=person.pk)


@pytest.fixture
def update_calls(monkeypatch):
    """Count the calls of the set-based people service (and let them through)."""
    calls = []
    update_people = people.update_people

    def counted(workspace, changes):
        calls.append((workspace.pk, [person_id for person_id, _ in changes]))
        return update_people(workspace, changes)

    monkeypatch.setattr(people, "update_people", counted)
    return calls


def test_a_batch_with_mixed_outcomes_writes_once_and_keeps_each_reason(
        workspace, allowed, update_calls):
    allowed.answer("/map/ada", Reply(200, json={"plan": "pro", "seats": 5}))
    allowed.answer("/map/bob", Reply(200, json={"plan": "pro"}))  # already so
    allowed.answer("/map/cy", Reply(200, json={"plan": "x" * 5000}))  # too large
    allowed.answer("/map/dee", Reply(200, body=b"<html>not json</html>"))
    allowed.answer("/map/eve", Reply(200, json={"plan": "pro"}))  # deleted meanwhile
    allowed.answer("/map/fay", Reply(200, json={"seats": 2}))
    allowed.answer("/map/gus", Reply(200, json={"plan": "pro"}))  # suppressed meanwhile
    campaign = mapping_campaign(workspace, allowed)
    ada = make_person(workspace, "ada", plan="free", billing={"currency": "EUR"})
    bob = make_person(workspace, "bob", plan="pro")
    cy = make_person(workspace, "cy", plan="free")
    dee = make_person(workspace, "dee", plan="free")
    eve = make_person(workspace, "eve", plan="free")
    fay = make_person(workspace, "fay")
    gus = make_person(workspace, "gus", plan="free")
    enter(campaign, ada, bob, cy, dee, eve, fay, gus)
    deliveries = {person.customer_id: delivery_of(person) for person in (ada, bob, cy, dee,
                                                                          eve, fay, gus)}
    bob_updated = Person.objects.get(pk=bob.pk).updated_at
    before = Activity.objects.filter(kind=Activity.Kind.ATTRIBUTES_CHANGED).count()

    def meanwhile():
        people.delete_person(workspace, people.Ref("id", "eve"))
        people.suppress_identifier(workspace, people.Ref("id", "gus"))

    states = send_batch(before_recording=meanwhile)

    # Every call was answered: all are sent, whatever the mapping made of the answer.
    assert states == {delivery.pk: "sent" for delivery in deliveries.values()}
    # One write for the people whose attributes change (not bob's, who already has it).
    assert update_calls == [(workspace.pk, [ada.pk, cy.pk, eve.pk, fay.pk, gus.pk])]
    reasons = {name: delivery.reason for name, delivery in (
        (name, Delivery.objects.get(pk=delivery.pk)) for name, delivery in deliveries.items())}
    assert reasons["ada"] == reasons["bob"] == reasons["fay"] == ""
    assert reasons["cy"].startswith("mapping the response failed: ")
    assert "1000" in reasons["cy"]
    assert reasons["dee"] == "the response is not JSON: nothing was mapped"
    assert reasons["eve"] == "mapping the response: not_found"
    for person in (ada, bob, cy, dee, fay):
        person.refresh_from_db()
    assert ada.attributes["plan"] == "pro"
    assert ada.attributes["billing"] == {"currency": "EUR", "seats": 5}
    assert Delivery.objects.get(pk=deliveries["ada"].pk).payload["mapped"] == {
        "plan": "pro", "billing": {"currency": "EUR", "seats": 5}}
    assert bob.updated_at == bob_updated  # not rewritten
    assert (cy.attributes["plan"], dee.attributes["plan"]) == ("free", "free")
    assert "mapped" not in Delivery.objects.get(pk=deliveries["cy"].pk).payload
    assert fay.attributes["billing"] == {"seats": 2}
    assert not Person.objects.filter(customer_id__in=["eve", "gus"]).exists()
    # The suppressed person's delivery forgets them: nothing of the answer is kept.
    forgotten = Delivery.objects.get(pk=deliveries["gus"].pk)
    assert (forgotten.state, forgotten.cio_id, forgotten.payload) == ("sent", None, {})
    assert forgotten.reason == "mapping the response: not_found"
    # Activity as identify would log it, for those who changed only.
    assert Activity.objects.filter(kind=Activity.Kind.ATTRIBUTES_CHANGED).count() == before + 2


def test_two_deliveries_for_one_person_in_a_batch_both_land(workspace, allowed):
    allowed.answer("/first/ada", Reply(200, json={"seats": 3}))
    allowed.answer("/second/ada", Reply(200, json={"currency": "EUR"}))
    first = running(workspace, [hook(allowed.url + "/first/{{customer.id}}", response=[
        {"path": "seats", "attribute": "billing.seats"}])])
    second = running(workspace, [hook(allowed.url + "/second/{{customer.id}}", response=[
        {"path": "currency", "attribute": "billing.currency"}])])
    ada = make_person(workspace, "ada", billing={"plan": "pro"})
    enter(first, ada)
    enter(second, ada)

    assert webhooks.send_due_webhooks() == 2

    ada.refresh_from_db()
    assert ada.attributes["billing"] == {"plan": "pro", "seats": 3, "currency": "EUR"}
    assert set(Delivery.objects.values_list("state", "reason")) == {("sent", "")}


def test_each_workspace_is_written_with_one_call(workspace, allowed, update_calls):
    other = make_workspace("Other")
    for space in (workspace, other):
        campaign = mapping_campaign(space, allowed)
        enter(campaign, *[make_person(space, f"p{number}", plan="free")
                          for number in range(3)])
    allowed.answer("/map/p0", Reply(200, json={"plan": "pro"}))
    allowed.answer("/map/p1", Reply(200, json={"plan": "pro"}))
    allowed.answer("/map/p2", Reply(200, json={"plan": "pro"}))

    assert webhooks.send_due_webhooks() == 6

    assert sorted((space, len(ids)) for space, ids in update_calls) == [
        (workspace.pk, 3), (other.pk, 3)]
    assert set(Person.objects.values_list("attributes__plan", flat=True)) == {"pro"}


def test_when_the_batch_write_fails_each_person_is_mapped_on_their_own(
        workspace, allowed, monkeypatch):
    allowed.answer("/map/ada", Reply(200, json={"plan": "pro"}))
    allowed.answer("/map/bob", Reply(200, json={"plan": "team"}))
    allowed.answer("/map/cy", Reply(200, json={"plan": "y" * 5000}))
    campaign = mapping_campaign(workspace, allowed)
    ada, bob, cy = (make_person(workspace, name, plan="free") for name in ("ada", "bob", "cy"))
    enter(campaign, ada, bob, cy)

    def broken(workspace, changes):
        Person.objects.filter(pk=changes[0][0]).update(attributes={"half": "written"})
        raise RuntimeError("the bulk write broke")

    monkeypatch.setattr(people, "update_people", broken)

    assert webhooks.send_due_webhooks() == 3

    for person in (ada, bob, cy):
        person.refresh_from_db()
    # The failed bulk write left nothing behind (its savepoint rolled back) ...
    assert (ada.attributes["plan"], bob.attributes["plan"]) == ("pro", "team")
    assert "half" not in ada.attributes
    # ... and the people were mapped one by one, the refused value for its delivery only.
    assert cy.attributes["plan"] == "free"
    reasons = dict(Delivery.objects.values_list("journey__person_id", "reason"))
    assert (reasons[ada.pk], reasons[bob.pk]) == ("", "")
    assert reasons[cy.pk].startswith("mapping the response failed: ")
    assert set(Delivery.objects.values_list("state", flat=True)) == {"sent"}


def recording_queries(workspace, server, size: int) -> int:
    """Count the queries that recording a batch of ``size`` mapped answers takes."""
    campaign = mapping_campaign(workspace, server)
    crowd = [make_person(workspace, f"s{size}-{number}", plan="free") for number in range(size)]
    for person in crowd:
        server.answer(f"/map/{person.customer_id}", Reply(200, json={"plan": "pro",
                                                                     "seats": size}))
    enter(campaign, *crowd)
    now = timezone.now()
    claimed = webhooks.claim_due(now=now, limit=size)
    people_of = webhooks.people_by_delivery(claimed)
    outcomes = []
    for delivery in claimed:
        call = webhooks.prepare(delivery, now=now, person=people_of.get(delivery.pk))
        outcomes.append(webhooks.Outcome(delivery, call, webhooks.send(call),
                                         people_of.get(delivery.pk)))
    with CaptureQueriesContext(connection) as queries:
        states = webhooks.record_outcomes(outcomes, now=now)
    assert list(states.values()) == ["sent"] * size
    assert all(person.attributes["plan"] == "pro" for person in
               Person.objects.filter(pk__in=[person.pk for person in crowd]))
    return len(queries)


# Which deliveries are still ours; in a savepoint: lock the people, write them, log their
# activity, ask whether segments need a look; lock the journeys and the deliveries, write
# them; and the two savepoints' SAVEPOINT and RELEASE.
RECORDING_QUERIES = 13


def test_recording_a_mapped_batch_takes_the_same_queries_however_large(workspace, allowed):
    assert recording_queries(workspace, allowed, 3) == RECORDING_QUERIES
    assert recording_queries(workspace, allowed, 30) == RECORDING_QUERIES


def test_a_claimed_batch_shares_one_campaign_and_workspace_read_once(workspace, allowed):
    """Claiming takes the same queries for 3 deliveries as for 30, and the deliveries of
    one campaign share its one instance (its definition parsed once, not per delivery)."""

    def claim(size: int) -> tuple[list[Delivery], int]:
        campaign = mapping_campaign(workspace, allowed)
        enter(campaign, *[make_person(workspace, f"c{size}-{n}") for n in range(size)])
        with CaptureQueriesContext(connection) as queries:
            claimed = webhooks.claim_due(now=timezone.now(), limit=size)
        return claimed, len(queries)

    few, few_queries = claim(3)
    many, many_queries = claim(30)

    assert (len(few), len(many)) == (3, 30) and few_queries == many_queries
    assert len({id(delivery.campaign) for delivery in many}) == 1
    assert len({id(delivery.workspace) for delivery in many}) == 1
    assert many[0].campaign.definition["workflow"]["steps"][0]["type"] == "webhook"
    with CaptureQueriesContext(connection) as later:  # nothing more is read for them
        assert {delivery.workspace.pk for delivery in many} == {workspace.pk}
        assert all(delivery.journey.campaign_id == many[0].campaign.pk for delivery in many)
    assert len(later) == 0
