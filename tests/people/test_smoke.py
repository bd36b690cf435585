from people import services
from people.models import Person


def test_identify_creates(workspace):
    r = services.identify_person(workspace, services.Ref("id", "u1"), {"email": "A@x.com", "plan": "pro"})
    assert r.outcome == "created"
    p = Person.objects.get()
    assert p.email == "A@x.com" and p.email_key == "a@x.com"
    r = services.track_event(workspace, services.Ref("id", "u1"), name="login", data={"a": 1})
    assert r.outcome == "created"
    res = services.delete_people(workspace, Person.objects.all(), suppress=True)
    assert res.deleted == 1 and res.suppressed == 2
