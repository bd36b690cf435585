"""Emails are compared in one folded form everywhere (people.validation.email_key).

U+017F (long s) upper-cases to S but ``str.lower()`` leaves it alone; U+212A (Kelvin
sign) lower-cases to k but SQL's UPPER leaves it alone. Neither may get past a
suppression or make a second person with one email.
"""

import pytest
from rest_framework.test import APIClient

from people import services
from people.models import Person, Suppression
from people.validation import email_key
from tests.factories import make_person

LONG_S = "\u017f"
KELVIN = "\u212a"


def test_email_key_folds_long_s_and_kelvin_sign_to_ascii():
    assert email_key(f"{LONG_S}am@Example.com") == "sam@example.com"
    assert email_key(f"{KELVIN}ate@example.com") == "kate@example.com"
    assert email_key("Ana@EXAMPLE.com") == "ana@example.com"


@pytest.mark.parametrize("spelt", [f"{LONG_S}am@example.com", f"{LONG_S.upper()}AM@example.com"])
def test_a_long_s_does_not_get_past_a_suppressed_email(workspace, spelt):
    make_person(workspace, "sam", email="sam@example.com")
    services.suppress_identifier(workspace, services.Ref("id", "sam"))

    result = services.identify_person(workspace, services.Ref("email", spelt), {"plan": "pro"})
    event = services.track_event(workspace, services.Ref("email", spelt), name="login")
    by_id = services.identify_person(workspace, services.Ref("id", "new"), {"email": spelt})

    assert result.outcome == event.outcome == by_id.outcome == services.Outcome.SUPPRESSED
    assert not Person.objects.filter(workspace=workspace).exists()


def test_a_kelvin_sign_is_suppressed_as_the_k_it_folds_to(workspace):
    services.suppress_identifier(workspace, services.Ref("email", f"{KELVIN}ate@example.com"))

    assert list(Suppression.objects.values_list("value", flat=True)) == ["kate@example.com"]
    result = services.identify_person(workspace, services.Ref("email", "KATE@example.com"), {})
    assert result.outcome == services.Outcome.SUPPRESSED
    assert services.is_suppressed(workspace, [services.Ref("email", f"{KELVIN}ATE@example.com")])


def test_one_person_whatever_the_spelling_of_their_email(workspace):
    sam = make_person(workspace, email="sam@example.com")

    result = services.identify_person(workspace, services.Ref("email", f"{LONG_S}am@example.com"),
                                      {"plan": "pro"})

    assert result.outcome == services.Outcome.UPDATED
    assert result.person.pk == sam.pk
    assert Person.objects.filter(workspace=workspace).count() == 1


def test_app_api_email_search_folds_the_same_way(workspace):
    kate = make_person(workspace, email="kate@example.com")
    sam = make_person(workspace, email="sam@example.com")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {workspace.app_api_key}")

    found = {
        spelt: [row["cio_id"] for row in
                client.get("/v1/customers", {"email": spelt}).json()["results"]]
        for spelt in (f"{KELVIN}ate@example.com", f"{LONG_S}am@example.com")
    }

    assert found == {f"{KELVIN}ate@example.com": [kate.cio_id],
                     f"{LONG_S}am@example.com": [sam.cio_id]}
