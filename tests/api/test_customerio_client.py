"""The official Customer.io Python client, pointed at a live engage server."""

import pytest
from customerio.track import CustomerIO

from people.models import Device, Event, Person, Suppression


class LocalCustomerIO(CustomerIO):
    """The Track client forces https; engage's test server speaks plain http."""

    def setup_base_url(self):
        self.base_url = f"http://{self.host}:{self.port}/{self.url_prefix.strip('/')}"

    def batch(self, operations):
        return self.send_request("POST", f"http://{self.host}:{self.port}/api/v2/batch",
                                 {"batch": operations})


@pytest.fixture
def cio(live_server, transactional_db, workspace):
    host, port = live_server.url.removeprefix("http://").split(":")
    client = LocalCustomerIO(workspace.site_id, workspace.track_api_key, host=host,
                             port=int(port), retries=0)
    yield client
    client.close()


def test_identify_track_and_delete(cio, workspace):
    cio.identify("user/1 x", email="ada@example.com", plan="pro", created_at=1_700_000_000)
    person = Person.objects.get(workspace=workspace)
    assert (person.customer_id, person.email) == ("user/1 x", "ada@example.com")
    assert int(person.created_at.timestamp()) == 1_700_000_000

    cio.track("user/1 x", "purchase", data={"amount": 5}, id="01HZXA")
    cio.track("user/1 x", "purchase", data={"amount": 5}, id="01HZXA")
    cio.pageview("user/1 x", "/pricing", referrer="ads")
    assert list(Event.objects.order_by("pk").values_list("name", "type", "data")) == [
        ("purchase", "event", {"amount": 5}),
        ("/pricing", "page", {"referrer": "ads"}),
    ]

    cio.track_anonymous("anon-7", "visit", data={"page": "/"})
    cio.identify("ada@example.com", anonymous_id="anon-7")
    assert person.events.filter(name="visit").exists()

    cio.add_device("user/1 x", "device+token/1", "ios", app_version="2.1")
    device = Device.objects.get()
    assert (device.token, device.attributes) == ("device+token/1", {"app_version": "2.1"})
    cio.delete_device("user/1 x", "device+token/1")
    assert not Device.objects.exists()

    cio.delete("user/1 x")
    assert not Person.objects.exists()


def test_merge_suppress_and_unsuppress(cio, workspace):
    cio.identify("p1", plan="pro")
    cio.identify("s1", email="s1@example.com", city="Berlin")
    cio.merge_customers("id", "p1", "email", "s1@example.com")
    primary = Person.objects.get()
    assert primary.customer_id == "p1" and primary.attributes["city"] == "Berlin"

    cio.suppress("p1")
    assert not Person.objects.exists()
    assert set(Suppression.objects.values_list("value", flat=True)) == {"p1", "s1@example.com"}
    cio.identify("p1", plan="free")
    assert not Person.objects.exists()

    cio.unsuppress("p1")
    cio.identify("p1", plan="free")
    assert Person.objects.get().attributes == {"plan": "free"}


def test_errors_reach_the_client_as_exceptions(cio):
    from customerio.client_base import CustomerIOException

    with pytest.raises(CustomerIOException, match="400"):
        cio.identify("u1", bio="x" * 1001)
    assert not Person.objects.exists()


def test_batch(cio, workspace):
    cio.batch([
        {"type": "person", "action": "identify", "identifiers": {"id": "u1"},
         "attributes": {"email": "ada@example.com", "plan": "pro"}},
        {"type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": "login"},
        {"type": "person", "action": "identify", "identifiers": {"email": "grace@example.com"},
         "attributes": {"plan": "team"}},
    ])
    assert sorted(Person.objects.values_list("email", "attributes__plan")) == [
        ("ada@example.com", "pro"), ("grace@example.com", "team")]
    assert Event.objects.get().person.customer_id == "u1"
