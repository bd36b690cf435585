"""The workspace settings pages: identifiers, API credentials, suppressions, members."""

import re

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from engage.models import IdentifierModeChange, Membership, Workspace
from people import identifier_mode, settings_views
from people import services as people
from people.models import Person
from tests.api.conftest import basic
from tests.factories import UserFactory, make_member, make_person

INDEX = reverse("settings:index")
IDENTIFIERS = reverse("settings:identifiers")
EMAIL_UPDATE = reverse("settings:email-update")
CREDENTIALS = reverse("settings:credentials")
REGENERATE_TRACK = reverse("settings:credentials-regenerate", args=["track"])
REGENERATE_APP = reverse("settings:credentials-regenerate", args=["app"])
SUPPRESSIONS = reverse("settings:suppression-list")
MEMBERS = reverse("settings:member-list")
MEMBER_ADD = reverse("settings:member-add")


def role(name):
    return reverse("settings:member-role", args=[name])


def remove(pk):
    return reverse("settings:member-delete", args=[pk])


@pytest.fixture
def admin(client, workspace):
    user = make_member(workspace, Membership.Role.ADMIN, username="ada")
    client.force_login(user)
    return user


def sign_in_as(client, workspace, role_name):
    user = make_member(workspace, role_name)
    client.force_login(user)
    return user


def track_identify(workspace, key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(workspace.site_id, key))
    return client.put("/api/v1/customers/x", data={"plan": "pro"}, format="json")


# --- roles, links and the overview ------------------------------------------------------


def test_settings_need_a_login(client, db):
    response = client.get(INDEX)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_members_see_the_settings_link_and_only_the_sections_their_role_allows(client,
                                                                               workspace):
    sign_in_as(client, workspace, Membership.Role.EDITOR)

    home = client.get(reverse("home")).content.decode()
    page = client.get(INDEX).content.decode()

    assert f'href="{INDEX}"' in home
    assert f'href="{SUPPRESSIONS}"' in page
    for admin_only in (IDENTIFIERS, CREDENTIALS, MEMBERS):
        assert f'href="{admin_only}"' not in page
    assert "Email or ID" in page  # the mode is shown to everyone


def test_admins_see_every_section(client, admin):
    page = client.get(INDEX).content.decode()
    for url in (IDENTIFIERS, CREDENTIALS, SUPPRESSIONS, MEMBERS):
        assert f'href="{url}"' in page


@pytest.mark.parametrize("role_name", [Membership.Role.VIEWER, Membership.Role.EDITOR])
def test_admin_pages_are_refused_to_other_roles(client, workspace, role_name):
    sign_in_as(client, workspace, role_name)
    other = make_member(workspace, Membership.Role.VIEWER)
    membership = Membership.objects.get(user=other)
    old_hash = Workspace.objects.get(pk=workspace.pk).track_key_hash

    for url in (IDENTIFIERS, CREDENTIALS, REGENERATE_TRACK, MEMBERS, remove(membership.pk)):
        assert client.get(url).status_code == 403, url
    posts = [(IDENTIFIERS, {"mode": "id"}), (EMAIL_UPDATE, {"allow_email_update_by_id": "on"}),
             (REGENERATE_TRACK, {}), (REGENERATE_APP, {}),
             (MEMBER_ADD, {"user": "someone", "role": "admin"}),
             (role(membership.pk), {"role": "admin"}), (remove(membership.pk), {})]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url

    workspace.refresh_from_db()
    assert workspace.track_key_hash == old_hash
    assert workspace.identifier_mode == Workspace.IdentifierMode.EMAIL_OR_ID
    assert not workspace.allow_email_update_by_id
    assert Membership.objects.get(user=other).role == Membership.Role.VIEWER


def test_every_settings_post_needs_csrf(workspace):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_member(workspace, Membership.Role.ADMIN))
    member = Membership.objects.get(user=make_member(workspace, Membership.Role.VIEWER))
    old_hash = workspace.track_key_hash

    for url in (IDENTIFIERS, EMAIL_UPDATE, REGENERATE_TRACK, REGENERATE_APP, MEMBER_ADD,
                role(member.pk), remove(member.pk)):
        assert client.post(url, {"mode": "id", "role": "admin"}).status_code == 403, url

    workspace.refresh_from_db()
    assert workspace.track_key_hash == old_hash
    assert workspace.identifier_mode == Workspace.IdentifierMode.EMAIL_OR_ID
    assert Membership.objects.filter(pk=member.pk, role=Membership.Role.VIEWER).exists()


# --- API credentials -------------------------------------------------------------------


def test_credentials_show_the_site_id_and_key_prefixes_only(client, admin, workspace):
    page = client.get(CREDENTIALS).content.decode()

    assert workspace.site_id in page
    assert workspace.track_api_key[:10] in page and workspace.app_api_key[:10] in page
    assert workspace.track_api_key not in page and workspace.app_api_key not in page
    assert workspace.track_key_hash not in page


def test_regenerating_asks_first(client, admin, workspace):
    response = client.get(REGENERATE_TRACK)

    assert response.status_code == 200
    assert b"stops working" in response.content and b'id="confirm-regenerate"' in response.content
    workspace.refresh_from_db()
    assert workspace.check_track_key(workspace.track_api_key)


def test_regenerating_shows_the_new_key_once_and_the_old_one_stops_working(client, admin,
                                                                           workspace):
    old = workspace.track_api_key
    assert track_identify(workspace, old).status_code == 200

    response = client.post(REGENERATE_TRACK)

    assert response.status_code == 200
    new = response.context["new_key"]
    assert new.startswith("trk_") and new in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert track_identify(workspace, old).status_code == 401
    assert track_identify(workspace, new).status_code == 200
    # Never kept anywhere it could be shown again.
    assert new not in str(dict(client.session.items()))
    assert all(new not in cookie.value for cookie in client.cookies.values())
    for url in (CREDENTIALS, REGENERATE_TRACK, INDEX):
        assert new not in client.get(url).content.decode()
    assert new[:10] in client.get(CREDENTIALS).content.decode()


def test_regenerating_the_app_key(client, admin, workspace):
    response = client.post(REGENERATE_APP)

    new = response.context["new_key"]
    assert new.startswith("app_")
    workspace.refresh_from_db()
    assert workspace.app_key_prefix == new[:10]
    assert workspace.check_track_key(workspace.track_api_key)  # the other key is untouched


def test_only_track_and_app_keys_regenerate(client, admin):
    assert client.post(reverse("settings:credentials-regenerate", args=["site"])).status_code == 404


def test_credentials_are_the_current_workspaces(client, admin, workspace, other_workspace):
    old_other = other_workspace.track_key_hash

    page = client.get(CREDENTIALS).content.decode()
    client.post(REGENERATE_TRACK)

    assert other_workspace.site_id not in page
    other_workspace.refresh_from_db()
    assert other_workspace.track_key_hash == old_other


# --- identifier mode -------------------------------------------------------------------


@pytest.fixture
def id_admin(client, id_workspace):
    user = make_member(id_workspace, Membership.Role.ADMIN)
    client.force_login(user)
    return user


def test_shared_emails_are_listed_with_links_to_the_people(client, id_admin, id_workspace,
                                                           workspace):
    ada1 = make_person(id_workspace, "ada1", email="Ada@example.com")
    ada2 = make_person(id_workspace, "ada2", email="ada@example.com")
    make_person(id_workspace, "bob", email="bob@example.com")
    make_person(workspace, "zed1", email="zed@example.com")
    make_person(workspace, "zed2", email="zed@example.com")  # not this workspace's

    response = client.get(IDENTIFIERS)

    page = response.content.decode()
    assert response.context["conflicts"].total == 1
    assert "1 email is shared by several people" in page
    assert 'data-email="ada@example.com"' in page
    assert reverse("person-detail", args=[ada1.cio_id]) in page
    assert reverse("person-detail", args=[ada2.cio_id]) in page
    assert "zed@example.com" not in page and "bob@example.com" not in page
    assert 'id="switch-mode" disabled' in page


def test_the_conflict_list_is_bounded(client, id_admin, id_workspace, monkeypatch):
    monkeypatch.setattr(settings_views, "CONFLICTS_SHOWN", 2)
    for letter in "abc":
        make_person(id_workspace, f"{letter}1", email=f"{letter}@example.com")
        make_person(id_workspace, f"{letter}2", email=f"{letter}@example.com")

    page = client.get(IDENTIFIERS).content.decode()

    assert "3 emails are shared" in page and "The first 2 are listed" in page
    assert page.count("data-email=") == 2


def test_switching_to_email_or_id_is_refused_until_duplicates_are_resolved(client, id_admin,
                                                                           id_workspace):
    make_person(id_workspace, "ada1", email="ada@example.com")
    make_person(id_workspace, "ada2", email="ada@example.com")

    refused = client.post(IDENTIFIERS, {"mode": "email_or_id"})

    assert refused.status_code == 409
    assert b"shared by several people" in refused.content
    assert b'data-email="ada@example.com"' in refused.content
    id_workspace.refresh_from_db()
    assert id_workspace.identifier_mode == "id"

    people.identify_person(id_workspace, people.Ref("id", "ada2"), {"email": "ada2@example.com"})
    assert b'id="switch-mode" disabled' not in client.get(IDENTIFIERS).content
    switched = client.post(IDENTIFIERS, {"mode": "email_or_id"})

    assert switched.status_code == 302
    id_workspace.refresh_from_db()
    assert id_workspace.identifier_mode == "email_or_id"
    assert Person.objects.get(customer_id="ada2").email_key == "ada2@example.com"
    assert b"now identified by Email or ID" in client.get(switched["Location"]).content


def test_switching_back_to_id(client, admin, workspace):
    make_person(workspace, "ada", email="ada@example.com")

    response = client.post(IDENTIFIERS, {"mode": "id"})

    assert response.status_code == 302
    workspace.refresh_from_db()
    assert workspace.identifier_mode == "id"
    assert Person.objects.get().email_key is None


def test_a_large_switch_runs_as_a_job_the_page_follows(client, id_admin, id_workspace,
                                                       monkeypatch):

    monkeypatch.setattr(IdentifierModeChange, "batch_size", 2)
    for name in ["ada", "bob", "cy"]:
        make_person(id_workspace, name, email=f"{name}@example.com")

    response = client.post(IDENTIFIERS, {"mode": "email_or_id"})

    page = client.get(response["Location"]).content.decode()
    assert "The switch is under way" in page
    assert "0 of 3 people (0%)" in page and 'hx-trigger="every 1s"' in page
    assert 'id="switch-mode"' not in page  # no second switch while this one runs
    change = identifier_mode.running_mode_change(id_workspace)
    assert change.requested_by == id_admin
    identifier_mode.run_identifier_mode_change(change.pk, max_batches=1)
    progress = client.get(IDENTIFIERS, {"progress": "1"}, HTTP_HX_REQUEST="true")
    assert "2 of 3 people (66%)" in progress.content.decode()
    assert "<h1>" not in progress.content.decode()  # the partial only

    identifier_mode.run_identifier_mode_change(change.pk)
    done = client.get(IDENTIFIERS, {"progress": "1"}, HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true"  # the whole page shows the outcome
    page = client.get(IDENTIFIERS).content.decode()
    assert '<strong id="identifier-mode">Email or ID</strong>' in page


def test_a_switch_that_failed_says_why(client, id_admin, id_workspace, monkeypatch):
    monkeypatch.setattr(IdentifierModeChange, "batch_size", 2)
    for name in ["ada", "bob", "cy"]:
        make_person(id_workspace, name, email=f"{name}@example.com")
    client.post(IDENTIFIERS, {"mode": "email_or_id"})
    make_person(id_workspace, "ada2", email="Ada@example.com")
    identifier_mode.run_identifier_mode_change(
        identifier_mode.running_mode_change(id_workspace).pk)

    page = client.get(IDENTIFIERS).content.decode()
    assert 'id="mode-change-failed"' in page and "share an email" in page
    assert 'data-email="ada@example.com"' in page  # and who shares it
    assert '<strong id="identifier-mode">ID only</strong>' in page


def test_an_unknown_mode_is_refused(client, admin, workspace):
    assert client.post(IDENTIFIERS, {"mode": "phone"}).status_code == 400
    workspace.refresh_from_db()
    assert workspace.identifier_mode == "email_or_id"


def test_the_email_update_option_is_saved(client, admin, workspace):
    client.post(EMAIL_UPDATE, {"allow_email_update_by_id": "on"})
    workspace.refresh_from_db()
    assert workspace.allow_email_update_by_id
    client.post(EMAIL_UPDATE, {})
    workspace.refresh_from_db()
    assert not workspace.allow_email_update_by_id


# --- suppression list ------------------------------------------------------------------


def suppress(workspace, kind, value):
    people.suppress_identifier(workspace, people.Ref(kind, value))


def values_in(response) -> list[str]:
    return [suppression.value for suppression in response.context["suppressions"]]


def test_every_member_sees_the_suppression_list_and_how_to_unsuppress(client, workspace,
                                                                      other_workspace):
    sign_in_as(client, workspace, Membership.Role.VIEWER)
    make_person(workspace, "ada", email="Ada@example.com")
    people.delete_people(workspace, Person.objects.filter(customer_id="ada"), suppress=True)
    suppress(other_workspace, "id", "theirs")

    response = client.get(SUPPRESSIONS)

    page = response.content.decode()
    assert response.status_code == 200
    assert sorted(values_in(response)) == ["ada", "ada@example.com"]
    assert "theirs" not in page
    assert re.search(r"<code>ada@example.com</code></td>\s*<td>Email</td>\s*<td><time[^>]*>now"
                     r"</time></td>\s*<td>People page</td>", page)
    assert re.search(r"<code>ada</code></td>\s*<td>ID</td>", page)
    assert "/api/v1/customers/{identifier}/unsuppress" in page
    assert 'method="post"' not in page.split('id="suppression-table"')[1]  # no unsuppress button


def test_suppressions_are_searched_by_exact_identifier_or_its_start(client, workspace):
    sign_in_as(client, workspace, Membership.Role.VIEWER)
    for value in ["ann", "anna", "bob"]:
        suppress(workspace, "id", value)
    suppress(workspace, "email", "Anne@example.com")

    assert sorted(values_in(client.get(SUPPRESSIONS, {"q": "ann"}))) == [
        "ann", "anna", "anne@example.com"]
    assert values_in(client.get(SUPPRESSIONS, {"q": "ann", "match": "exact"})) == ["ann"]
    assert values_in(client.get(SUPPRESSIONS, {"q": "ANNE@example.com", "match": "exact"})) == [
        "anne@example.com"]
    assert values_in(client.get(SUPPRESSIONS, {"q": "ann", "type": "email"})) == [
        "anne@example.com"]
    assert values_in(client.get(SUPPRESSIONS, {"q": "zed"})) == []


def test_suppressions_come_in_keyset_pages_newest_first(client, workspace, monkeypatch):
    monkeypatch.setattr(settings_views, "SUPPRESSIONS_PAGE", 2)
    sign_in_as(client, workspace, Membership.Role.VIEWER)
    for number in range(5):
        suppress(workspace, "id", f"u{number}")

    first = client.get(SUPPRESSIONS)
    second = client.get(SUPPRESSIONS, {"before": first.context["next_before"]})
    third = client.get(SUPPRESSIONS, {"before": second.context["next_before"]})

    assert values_in(first) == ["u4", "u3"] and first.context["count"] == 5
    assert values_in(second) == ["u2", "u1"]
    assert values_in(third) == ["u0"] and third.context["next_before"] is None
    assert f"before={first.context['next_before']}" in first.content.decode()


def test_the_suppression_page_costs_the_same_for_many_rows(client, workspace,
                                                          django_assert_max_num_queries):
    user = sign_in_as(client, workspace, Membership.Role.VIEWER)
    for number in range(30):
        people.suppress_identifier(workspace, people.Ref("id", f"u{number}"), actor=user)
    client.get(SUPPRESSIONS)  # the session and membership are warm

    with django_assert_max_num_queries(6):
        response = client.get(SUPPRESSIONS)
    assert len(response.context["suppressions"]) == 30


def test_the_search_answers_htmx_with_the_table_only(client, workspace):
    sign_in_as(client, workspace, Membership.Role.VIEWER)
    suppress(workspace, "id", "ann")

    response = client.get(SUPPRESSIONS, {"q": "ann"}, headers={"HX-Request": "true"})

    page = response.content.decode()
    assert page.lstrip().startswith('<div id="suppression-table">')
    assert "<html" not in page and "ann" in page


def test_a_bad_page_marker_is_reported_not_raised(client, workspace):
    sign_in_as(client, workspace, Membership.Role.VIEWER)
    response = client.get(SUPPRESSIONS, {"before": "x"})
    assert response.status_code == 200 and b"Fix the search" in response.content


# --- members ---------------------------------------------------------------------------


def test_members_are_listed_with_their_roles(client, admin, workspace, other_workspace):
    make_member(workspace, Membership.Role.VIEWER, username="vera")
    make_member(other_workspace, Membership.Role.ADMIN, username="outsider")

    response = client.get(MEMBERS)

    members = [(m.user.username, m.role) for m in response.context["members"]]
    assert members == [("ada", "admin"), ("vera", "viewer")]
    assert b"outsider" not in response.content


def test_an_admin_changes_a_role(client, admin, workspace):
    vera = Membership.objects.get(user=make_member(workspace, Membership.Role.VIEWER))

    response = client.post(role(vera.pk), {"role": "editor"})

    assert response.status_code == 302
    assert Membership.objects.get(pk=vera.pk).role == Membership.Role.EDITOR


def test_an_admin_adds_an_existing_user_by_username_or_email(client, admin, workspace):
    UserFactory(username="bo")
    UserFactory(username="cy", email="Cy@Example.com")

    client.post(MEMBER_ADD, {"user": "bo", "role": "editor"})
    client.post(MEMBER_ADD, {"user": "cy@example.com", "role": "viewer"})

    roles = dict(Membership.objects.filter(workspace=workspace)
                 .values_list("user__username", "role"))
    assert roles == {"ada": "admin", "bo": "editor", "cy": "viewer"}


def test_adding_an_unknown_user_or_a_member_again_is_explained(client, admin, workspace):
    make_member(workspace, Membership.Role.VIEWER, username="vera")

    unknown = client.post(MEMBER_ADD, {"user": "nobody", "role": "viewer"})
    again = client.post(MEMBER_ADD, {"user": "vera", "role": "admin"})

    assert unknown.status_code == 400 and b"No user has this username or email" in unknown.content
    assert again.status_code == 400 and b"vera is already a member" in again.content
    assert Membership.objects.get(user__username="vera").role == Membership.Role.VIEWER


def test_an_admin_removes_a_member_after_confirming(client, admin, workspace):
    vera = Membership.objects.get(user=make_member(workspace, Membership.Role.VIEWER,
                                                   username="vera"))

    confirm = client.get(remove(vera.pk))
    assert b"Remove vera?" in confirm.content
    assert Membership.objects.filter(pk=vera.pk).exists()
    response = client.post(remove(vera.pk))

    assert response.status_code == 302
    assert not Membership.objects.filter(pk=vera.pk).exists()


def test_the_last_admin_cannot_demote_or_remove_themselves(client, admin, workspace):
    mine = Membership.objects.get(user=admin)

    demoted = client.post(role(mine.pk), {"role": "viewer"}, follow=True)
    removed = client.post(remove(mine.pk), follow=True)

    assert b"ada is the last admin of Acme" in demoted.content
    assert b"ada is the last admin of Acme" in removed.content
    assert Membership.objects.get(pk=mine.pk).role == Membership.Role.ADMIN


def test_an_admin_may_step_down_when_another_admin_remains(client, admin, workspace):
    make_member(workspace, Membership.Role.ADMIN)
    mine = Membership.objects.get(user=admin)

    response = client.post(role(mine.pk), {"role": "editor"})

    assert response["Location"] == INDEX
    assert Membership.objects.get(pk=mine.pk).role == Membership.Role.EDITOR
    assert client.get(MEMBERS).status_code == 403


def test_another_workspaces_members_are_out_of_reach(client, admin, workspace, other_workspace):
    outsider = Membership.objects.get(user=make_member(other_workspace, Membership.Role.ADMIN))

    assert client.post(role(outsider.pk), {"role": "viewer"}).status_code == 404
    assert client.get(remove(outsider.pk)).status_code == 404
    assert client.post(remove(outsider.pk)).status_code == 404
    assert Membership.objects.get(pk=outsider.pk).role == Membership.Role.ADMIN
