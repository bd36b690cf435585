"""The People page: search, filters, keyset pages and HTMX partials."""

import pytest
from django.urls import reverse

from engage.models import Membership
from people import services
from segments import services as segments
from tests.factories import make_member, make_person

URL = reverse("person-list")


@pytest.fixture
def viewer(client, workspace):
    user = make_member(workspace, Membership.Role.VIEWER)
    client.force_login(user)
    return user


def ids_in(response) -> list[str]:
    return [person.customer_id for person in response.context["people"]]


def test_people_page_needs_a_login(client, db):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_people_page_lists_newest_first_with_keyset_pages(client, viewer, workspace, settings,
                                                          monkeypatch):
    from people import views

    monkeypatch.setattr(views, "PAGE_SIZE", 3)
    for number in range(7):
        make_person(workspace, f"u{number}")

    first = client.get(URL)
    assert ids_in(first) == ["u6", "u5", "u4"]
    assert first.context["count"] == 7
    second = client.get(URL, {"before": first.context["next_before"]})
    third = client.get(URL, {"before": second.context["next_before"]})
    assert ids_in(second) == ["u3", "u2", "u1"]
    assert ids_in(third) == ["u0"] and third.context["next_before"] is None


def test_search_by_id_email_and_cio_id(client, viewer, workspace):
    ada = make_person(workspace, "ada", email="Ada@Example.com")
    make_person(workspace, "bob")
    assert ids_in(client.get(URL, {"q": "ada"})) == ["ada"]
    assert ids_in(client.get(URL, {"q": "ada@example.com"})) == ["ada"]
    assert ids_in(client.get(URL, {"q": f"cio_{ada.cio_id}"})) == ["ada"]
    assert ids_in(client.get(URL, {"q": "ad"})) == []


def test_segment_and_attribute_filters(client, viewer, workspace):
    beta = segments.create_segment(workspace, name="Beta")
    ada = make_person(workspace, "ada", plan="pro")
    make_person(workspace, "bob", plan="pro")
    make_person(workspace, "cy", plan="free")
    segments.add_to_segment(beta, [ada.pk])

    assert ids_in(client.get(URL, {"segment": beta.pk})) == ["ada"]
    assert ids_in(client.get(URL, {"not_segment": beta.pk})) == ["cy", "bob"]
    response = client.get(URL, {"field": "plan", "operator": "eq", "value": "pro",
                                "not_segment": beta.pk})
    assert ids_in(response) == ["bob"]
    assert response.context["count"] == 1


def test_a_bad_attribute_filter_is_explained(client, viewer, workspace):
    make_person(workspace, "ada")
    response = client.get(URL, {"field": "a..b", "operator": "exists"})
    assert response.status_code == 200
    assert "not a valid field path" in response.content.decode()
    assert ids_in(response) == []


def test_another_workspaces_people_and_segments_stay_out(client, viewer, workspace,
                                                         other_workspace):
    make_person(other_workspace, "theirs")
    theirs = segments.create_segment(other_workspace, name="Theirs")
    assert ids_in(client.get(URL)) == []
    response = client.get(URL, {"segment": theirs.pk})
    assert "segment" in response.context["form"].errors


def test_htmx_requests_get_only_the_table(client, viewer, workspace):
    make_person(workspace, "ada")
    response = client.get(URL, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="people-table">')
    assert "<nav>" not in body and "ada" in body


def test_counts_are_capped_not_exact_on_large_sets(client, viewer, workspace, monkeypatch):
    from people import views

    monkeypatch.setattr(views, "COUNT_CAP", 3)
    for number in range(5):
        make_person(workspace, f"u{number}")
    response = client.get(URL)
    assert (response.context["count"], response.context["more"]) == (3, True)
    assert "More than 3 people" in response.content.decode()


def test_people_page_query_count_is_pinned(client, viewer, workspace,
                                           django_assert_max_num_queries):
    for number in range(30):
        make_person(workspace, f"u{number}")
        services.track_event(workspace, services.Ref("id", f"u{number}"), name="login")
    with django_assert_max_num_queries(9):
        response = client.get(URL)
    assert len(response.context["people"]) == 30
    assert response.context["people"][0].last_seen is not None
