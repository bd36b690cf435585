"""The people admin that support staff use: search, read-only pages and the deletion,
suppression and unsuppression actions, which must all go through the services."""

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from people import services
from people.models import (
    Activity,
    DeletionJob,
    DeletionJobItem,
    Device,
    Event,
    Person,
    Suppression,
)
from tests.factories import UserFactory, make_person, make_workspace

CONFIRMATION_TEMPLATE = "admin/people/person/delete_confirmation.html"


# --- helpers ---------------------------------------------------------------------------


def changelist_url(model: str = "person") -> str:
    return reverse(f"admin:people_{model}_changelist")


def staff_with(*perms: str):
    """A staff user (not superuser) holding exactly the given ``app.codename`` permissions."""
    user = UserFactory(is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def post_action(client, action, objects=(), *, model="person", query="", select_across=False,
                **extra):
    """POST a changelist action the way the admin's action bar does."""
    data = {
        "action": action,
        "index": "0",
        "select_across": "1" if select_across else "0",
        ACTION_CHECKBOX_NAME: [str(obj.pk) for obj in objects],
        **extra,
    }
    return client.post(changelist_url(model) + query, data)


def confirmation_form(response) -> dict[str, list[str]]:
    """The hidden fields of the confirmation page's form, as the browser would send them."""
    content = response.content.decode()
    match = re.search(r'id="content-main">.*?<form method="post">(.*?)</form>', content, re.S)
    assert match, "the confirmation page has no form"
    data: dict[str, list[str]] = {}
    for name, value in re.findall(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)"', match.group(1)
    ):
        data.setdefault(name, []).append(value)
    return data


def confirm(client, first_response, query=""):
    """Press the confirmation page's button: POST its hidden fields back to the changelist."""
    assert first_response.status_code == 200
    assert CONFIRMATION_TEMPLATE in [t.name for t in first_response.templates]
    return client.post(changelist_url() + query, confirmation_form(first_response))


def result_pks(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


def message_texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def make_full_person(workspace, customer_id="u1", email="Ann@Example.com", **attributes):
    """A person with attributes, an event and a device, all through the services."""
    person = make_person(workspace, customer_id, email=email, plan="pro", **attributes)
    ref = services.Ref("id", customer_id)
    tracked = services.track_event(workspace, ref, name="signed-in", data={"via": "sso-portal"})
    assert tracked.outcome == "created"
    assert services.add_device(
        workspace, ref, token=f"tok-{customer_id}-{workspace.pk}", platform="ios"
    ).outcome == "created"
    return Person.objects.get(pk=person.pk)


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture
def superuser(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def su_client(client, superuser):
    client.force_login(superuser)
    return client


# --- person changelist and pages -------------------------------------------------------


def test_search_by_exact_id(su_client, workspace):
    wanted = make_person(workspace, "u1")
    make_person(workspace, "u12")  # a partial match must not be found
    make_person(workspace, "xu1")

    response = su_client.get(changelist_url(), {"q": "u1"})

    assert response.status_code == 200
    assert result_pks(response) == {wanted.pk}


def test_search_by_email_is_case_insensitive(su_client, workspace):
    wanted = make_person(workspace, "u1", email="Ann@Example.com")
    make_person(workspace, "u2", email="bob@example.com")

    for term in ["ann@example.com", "ANN@EXAMPLE.COM", "  Ann@Example.com  "]:
        response = su_client.get(changelist_url(), {"q": term})
        assert result_pks(response) == {wanted.pk}, term


def test_search_by_email_where_email_is_not_an_identifier(su_client, id_workspace):
    wanted = make_person(id_workspace, "u1", email="Ann@Example.com")
    make_person(id_workspace, "u2", email="bob@example.com")
    assert wanted.email_key is None  # only the email column holds it here

    response = su_client.get(changelist_url(), {"q": "ANN@example.com"})

    assert result_pks(response) == {wanted.pk}


def test_search_by_cio_id_with_and_without_prefix(su_client, workspace):
    wanted = make_person(workspace, "u1")
    make_person(workspace, "u2")

    for term in [wanted.cio_id, f"cio_{wanted.cio_id}"]:
        response = su_client.get(changelist_url(), {"q": term})
        assert result_pks(response) == {wanted.pk}, term


def test_search_without_match_finds_nobody(su_client, workspace):
    make_person(workspace, "u1", email="ann@example.com")

    for term in ["u", "ann@", "example.com", "cio_"]:
        response = su_client.get(changelist_url(), {"q": term})
        assert result_pks(response) == set(), term


def test_changelist_offers_only_the_service_deletions(su_client, workspace):
    make_person(workspace, "u1")

    response = su_client.get(changelist_url())

    assert response.status_code == 200
    choices = {name for name, _ in response.context["action_form"].fields["action"].choices}
    assert {"delete_forever", "delete_and_suppress"} <= choices
    assert "delete_selected" not in choices
    assert 'value="delete_selected"' not in response.content.decode()


def test_stock_delete_selected_cannot_be_forged(su_client, workspace):
    person = make_person(workspace, "u1")

    post_action(su_client, "delete_selected", [person], post="yes")

    assert Person.objects.filter(pk=person.pk).exists()
    assert not Activity.objects.filter(kind=Activity.Kind.DELETED).exists()


def test_change_page_is_read_only_and_shows_attributes_and_recent_events(su_client, workspace):
    person = make_full_person(workspace, "u1", email="ann@example.com", favourite="pistachio")
    url = reverse("admin:people_person_change", args=[person.pk])

    response = su_client.get(url)

    assert response.status_code == 200
    content = response.content.decode()
    assert "pistachio" in content and "favourite" in content  # attributes
    assert "signed-in" in content and "sso-portal" in content  # recent events, with their data
    assert f"tok-u1-{workspace.pk}" in content  # devices
    assert 'name="_save"' not in content and 'name="_continue"' not in content
    assert reverse("admin:people_person_delete", args=[person.pk]) not in content
    assert 'class="deletelink"' not in content
    assert response.context["has_change_permission"] is False
    assert response.context["has_delete_permission"] is False


def test_change_page_refuses_edits(su_client, workspace):
    person = make_person(workspace, "u1", email="ann@example.com", plan="pro")
    url = reverse("admin:people_person_change", args=[person.pk])

    response = su_client.post(url, {"customer_id": "hacked", "email": "x@example.com",
                                    "unsubscribed": "on"})

    assert response.status_code == 403
    person.refresh_from_db()
    assert (person.customer_id, person.email, person.unsubscribed) == (
        "u1", "ann@example.com", False)


def test_change_page_shows_only_the_20_most_recent_events(su_client, workspace):
    person = make_person(workspace, "u1")
    ref = services.Ref("id", "u1")
    for n in range(21):
        services.track_event(workspace, ref, name=f"event-{n:02d}", timestamp=1_700_000_000 + n)

    response = su_client.get(reverse("admin:people_person_change", args=[person.pk]))

    content = response.content.decode()
    assert "event-20" in content and "event-01" in content
    assert "event-00" not in content  # the oldest of 21 is left off


@pytest.mark.parametrize("method", ["get", "post"])
def test_delete_url_is_refused(su_client, workspace, method):
    person = make_full_person(workspace, "u1")
    url = reverse("admin:people_person_delete", args=[person.pk])
    assert url == f"/admin/people/person/{person.pk}/delete/"

    response = getattr(su_client, method)(url, {"post": "yes"})

    assert response.status_code == 403
    assert Person.objects.filter(pk=person.pk).exists()
    assert Event.objects.filter(person=person).count() == 1
    assert Device.objects.filter(person=person).count() == 1


# --- "Delete forever" and "Delete and suppress" ----------------------------------------


@pytest.mark.parametrize("action", ["delete_forever", "delete_and_suppress"])
def test_first_post_asks_for_confirmation_and_deletes_nothing(su_client, workspace, action):
    first = make_full_person(workspace, "u1")
    second = make_full_person(workspace, "u2", email="bob@example.com")
    make_person(workspace, "u3")  # not selected

    response = post_action(su_client, action, [first, second])

    assert response.status_code == 200
    assert CONFIRMATION_TEMPLATE in [t.name for t in response.templates]
    content = response.content.decode()
    assert "<strong>2 people</strong>" in content
    assert f"cio_{first.cio_id}" in content and f"cio_{second.cio_id}" in content
    form = confirmation_form(response)
    assert form["action"] == [action]
    assert form["confirmed"] == ["yes"]
    assert sorted(form[ACTION_CHECKBOX_NAME]) == sorted([str(first.pk), str(second.pk)])
    assert Person.objects.count() == 3
    assert Event.objects.count() == 2 and Device.objects.count() == 2
    assert not Suppression.objects.exists()
    assert not Activity.objects.filter(
        kind__in=[Activity.Kind.DELETED, Activity.Kind.SUPPRESSED]).exists()


def test_confirmation_page_counts_one_person_in_the_singular(su_client, workspace):
    person = make_person(workspace, "u1")

    response = post_action(su_client, "delete_forever", [person])

    assert "<strong>1 person</strong>" in response.content.decode()


def test_delete_forever_deletes_through_the_service(su_client, workspace):
    person = make_full_person(workspace, "u1")
    kept = make_full_person(workspace, "u2", email="bob@example.com")
    cio_id = person.cio_id

    response = confirm(su_client, post_action(su_client, "delete_forever", [person]))

    assert response.status_code == 302
    assert not Person.objects.filter(pk=person.pk).exists()
    assert not Event.objects.filter(person_id=person.pk).exists()
    assert not Device.objects.filter(person_id=person.pk).exists()
    deleted = Activity.objects.get(workspace=workspace, kind=Activity.Kind.DELETED)
    assert deleted.cio_id == cio_id
    assert deleted.data == {"source": Suppression.Source.ADMIN}
    assert not deleted.forgotten
    # The person's history stays, tied to the cio_id.
    assert Activity.objects.filter(cio_id=cio_id, kind=Activity.Kind.CREATED).exists()
    assert not Suppression.objects.exists()
    # Not suppressed: the same id may come back, as a new person.
    result = services.identify_person(workspace, services.Ref("id", "u1"), {})
    assert result.outcome == "created" and result.person.cio_id != cio_id
    # The unselected person is untouched.
    assert Person.objects.filter(pk=kept.pk).exists()
    assert Event.objects.filter(person=kept).count() == 1
    assert Device.objects.filter(person=kept).count() == 1
    assert any("Deleted 1 people" in text for text in message_texts(response))


def test_delete_and_suppress_suppresses_and_forgets(su_client, superuser, workspace):
    person = make_full_person(workspace, "u1", email="Ann@Example.com")
    kept = make_person(workspace, "u2", email="bob@example.com")
    cio_id = person.cio_id
    history = Activity.objects.filter(cio_id=cio_id).count()
    assert history >= 2  # created, device added

    response = confirm(su_client, post_action(su_client, "delete_and_suppress", [person]))

    assert response.status_code == 302
    assert not Person.objects.filter(pk=person.pk).exists()
    assert not Event.objects.filter(person_id=person.pk).exists()
    assert not Device.objects.filter(person_id=person.pk).exists()
    suppressions = Suppression.objects.filter(workspace=workspace)
    assert {(s.identifier_type, s.value) for s in suppressions} == {
        ("id", "u1"), ("email", "ann@example.com")}
    assert {s.created_by_id for s in suppressions} == {superuser.pk}
    assert {s.source for s in suppressions} == {Suppression.Source.ADMIN}
    assert len({s.group for s in suppressions}) == 1
    # The activity is forgotten: no trace of the cio_id remains.
    assert not Activity.objects.filter(cio_id=cio_id).exists()
    forgotten = Activity.objects.filter(workspace=workspace, forgotten=True)
    assert forgotten.count() == history + 1
    assert set(forgotten.values_list("cio_id", flat=True)) == {None}
    assert all(activity.data == {} for activity in forgotten)
    assert forgotten.filter(kind=Activity.Kind.SUPPRESSED).count() == 1
    # A later identify with either identifier is ignored.
    for ref in [services.Ref("id", "u1"), services.Ref("email", "ANN@example.com")]:
        result = services.identify_person(workspace, ref, {"plan": "free"})
        assert result.outcome == "suppressed" and result.person is None
    assert list(Person.objects.filter(workspace=workspace)) == [kept]
    assert any("suppressed 2 identifiers" in text for text in message_texts(response))


def test_delete_all_matching_with_select_across(su_client, workspace, other_workspace):
    people = [make_full_person(workspace, f"u{n}", email=f"u{n}@example.com") for n in range(3)]
    outsider = make_full_person(other_workspace, "u0", email="u0@example.com")
    query = f"?workspace__id__exact={workspace.pk}"

    # Only one row is ticked on the page, but "select all" covers every match.
    first = post_action(su_client, "delete_forever", people[:1], query=query, select_across=True)
    assert "<strong>3 people</strong>" in first.content.decode()
    assert confirmation_form(first)["select_across"] == ["1"]
    assert Person.objects.count() == 4

    response = confirm(su_client, first, query=query)

    assert response.status_code == 302
    assert list(Person.objects.all()) == [outsider]
    assert Event.objects.get().person == outsider
    assert Device.objects.get().person == outsider
    assert Activity.objects.filter(workspace=workspace, kind=Activity.Kind.DELETED).count() == 3
    assert not Activity.objects.filter(
        workspace=other_workspace, kind=Activity.Kind.DELETED).exists()


def test_select_across_honours_the_search(su_client, workspace):
    target = make_person(workspace, "u1", email="ann@example.com")
    make_person(workspace, "u2", email="bob@example.com")
    query = "?q=ANN%40example.com"

    # The page shows (and ticks) only the match; select_across must not widen the set.
    first = post_action(su_client, "delete_and_suppress", [target], query=query,
                        select_across=True)
    assert "<strong>1 person</strong>" in first.content.decode()
    confirm(su_client, first, query=query)

    assert list(Person.objects.values_list("customer_id", flat=True)) == ["u2"]
    assert not Person.objects.filter(pk=target.pk).exists()
    assert set(Suppression.objects.values_list("value", flat=True)) == {"u1", "ann@example.com"}


@pytest.mark.parametrize("limit", [500, 1], ids=["in-request", "as-jobs"])
def test_people_of_two_workspaces_are_deleted_each_in_their_own(
    su_client, superuser, settings, django_capture_on_commit_callbacks, workspace,
    other_workspace, limit,
):
    settings.ENGAGE_SYNC_DELETE_LIMIT = limit
    # The same ids live in both workspaces: each must be deleted only where selected.
    a1, a2, a3 = (make_full_person(workspace, f"u{n}", email=f"u{n}@example.com")
                  for n in (1, 2, 3))
    b1, b2 = (make_full_person(other_workspace, f"u{n}", email=f"u{n}@example.com")
              for n in (1, 2))

    first = post_action(su_client, "delete_and_suppress", [a1, a2, b2])
    assert "<strong>3 people</strong>" in first.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = confirm(su_client, first)

    assert response.status_code == 302
    assert set(Person.objects.values_list("workspace", "customer_id")) == {
        (workspace.pk, "u3"), (other_workspace.pk, "u1")}
    assert set(Suppression.objects.values_list("workspace", "identifier_type", "value")) == {
        (workspace.pk, "id", "u1"), (workspace.pk, "email", "u1@example.com"),
        (workspace.pk, "id", "u2"), (workspace.pk, "email", "u2@example.com"),
        (other_workspace.pk, "id", "u2"), (other_workspace.pk, "email", "u2@example.com"),
    }
    assert set(Event.objects.values_list("person", flat=True)) == {a3.pk, b1.pk}
    assert set(Device.objects.values_list("person", flat=True)) == {a3.pk, b1.pk}
    suppressed = Activity.objects.filter(kind=Activity.Kind.SUPPRESSED)
    assert sorted(suppressed.values_list("workspace", flat=True)) == sorted(
        [workspace.pk, workspace.pk, other_workspace.pk])
    # b1 keeps u1 in the other workspace, and u1 stays usable there.
    result = services.identify_person(other_workspace, services.Ref("id", "u1"), {"x": 1})
    assert result.outcome == "updated" and result.person.pk == b1.pk
    assert services.identify_person(
        workspace, services.Ref("id", "u1"), {}).outcome == "suppressed"

    jobs = DeletionJob.objects.order_by("workspace_id")
    if limit == 1:
        # The limit applies per workspace: two people become a job, one is deleted at once.
        assert [(job.workspace_id, job.total, job.deleted, job.state) for job in jobs] == [
            (workspace.pk, 2, 2, "done")]
        assert all(job.already_gone == 0 for job in jobs)
    else:
        assert not jobs.exists()


# --- large selections become deletion jobs ---------------------------------------------


def test_large_selection_starts_a_deletion_job(
    su_client, superuser, settings, django_capture_on_commit_callbacks, workspace,
):
    settings.ENGAGE_SYNC_DELETE_LIMIT = 2
    settings.ENGAGE_DELETE_BATCH_SIZE = 2  # several batches
    people = [make_full_person(workspace, f"u{n}", email=f"u{n}@example.com") for n in range(5)]
    kept = make_full_person(workspace, "kept", email="kept@example.com")

    first = post_action(su_client, "delete_forever", people)
    assert "<strong>5 people</strong>" in first.content.decode()
    assert not DeletionJob.objects.exists()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = confirm(su_client, first)

    assert response.status_code == 302
    assert len(callbacks) >= 1
    job = DeletionJob.objects.get()
    assert job.state == DeletionJob.State.DONE
    assert (job.total, job.done, job.deleted, job.suppressed, job.already_gone) == (5, 5, 5, 0, 0)
    assert job.workspace == workspace
    assert job.requested_by == superuser
    assert job.source == Suppression.Source.ADMIN
    assert job.suppress is False
    assert job.finished_at is not None
    assert not DeletionJobItem.objects.filter(job=job).exists()
    assert list(Person.objects.all()) == [kept]
    assert set(Event.objects.values_list("person", flat=True)) == {kept.pk}
    assert Activity.objects.filter(kind=Activity.Kind.DELETED).count() == 5
    assert not Suppression.objects.exists()
    assert any(f"Deletion job {job.pk} started for 5 people" in text
               for text in message_texts(response))


def test_deletion_job_runs_only_after_commit(
    su_client, settings, django_capture_on_commit_callbacks, workspace,
):
    settings.ENGAGE_SYNC_DELETE_LIMIT = 2
    people = [make_person(workspace, f"u{n}") for n in range(3)]

    first = post_action(su_client, "delete_and_suppress", people)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        confirm(su_client, first)

    # The request itself only records the set; nothing is deleted yet.
    job = DeletionJob.objects.get()
    assert job.state == DeletionJob.State.PENDING and job.total == 3 and job.suppress
    assert set(DeletionJobItem.objects.values_list("person_pk", flat=True)) == {
        p.pk for p in people}
    assert Person.objects.count() == 3
    assert not Suppression.objects.exists()

    for callback in callbacks:
        callback()

    job.refresh_from_db()
    assert (job.state, job.deleted, job.suppressed) == (DeletionJob.State.DONE, 3, 3)
    assert not Person.objects.exists()
    assert Suppression.objects.count() == 3


def test_retry_action_finishes_a_failed_job(
    su_client, settings, django_capture_on_commit_callbacks, workspace,
):
    people = [make_person(workspace, f"u{n}") for n in range(3)]
    with django_capture_on_commit_callbacks(execute=False):
        job = services.start_deletion_job(
            workspace, Person.objects.all(), suppress=False, description="test")
    services.fail_deletion_job(job.pk, "worker died")
    assert Person.objects.count() == 3

    with django_capture_on_commit_callbacks(execute=True):
        response = post_action(su_client, "retry", [job], model="deletionjob")

    assert response.status_code == 302
    job.refresh_from_db()
    assert (job.state, job.deleted, job.error) == (DeletionJob.State.DONE, 3, "")
    assert not Person.objects.filter(pk__in=[p.pk for p in people]).exists()


# --- permissions -----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["delete_forever", "delete_and_suppress"])
def test_staff_without_delete_permission_cannot_delete(client, workspace, action):
    client.force_login(staff_with("people.view_person"))
    person = make_full_person(workspace, "u1")

    page = client.get(changelist_url())
    assert page.status_code == 200
    assert person.customer_id in page.content.decode()  # they can look
    assert "delete_forever" not in page.content.decode()
    assert "delete_and_suppress" not in page.content.decode()

    response = post_action(client, action, [person], confirmed="yes")

    assert response.status_code in (200, 302)
    assert Person.objects.filter(pk=person.pk).exists()
    assert Event.objects.filter(person=person).exists()
    assert not Suppression.objects.exists()
    assert not Activity.objects.filter(
        kind__in=[Activity.Kind.DELETED, Activity.Kind.SUPPRESSED]).exists()


def test_staff_with_delete_permission_can_delete(client, workspace):
    user = staff_with("people.view_person", "people.delete_person")
    client.force_login(user)
    person = make_full_person(workspace, "u1")

    page = client.get(changelist_url())
    choices = {name for name, _ in page.context["action_form"].fields["action"].choices}
    assert {"delete_forever", "delete_and_suppress"} <= choices
    assert "delete_selected" not in choices
    # The permission enables the actions only, never the stock delete page.
    delete_url = reverse("admin:people_person_delete", args=[person.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403

    first = post_action(client, "delete_and_suppress", [person])
    confirm(client, first)

    assert not Person.objects.exists()
    assert set(Suppression.objects.values_list("created_by", flat=True)) == {user.pk}


def test_staff_without_delete_permission_cannot_retry_jobs(
    client, django_capture_on_commit_callbacks, workspace,
):
    client.force_login(staff_with("people.view_deletionjob"))
    make_person(workspace, "u1")
    with django_capture_on_commit_callbacks(execute=False):
        job = services.start_deletion_job(
            workspace, Person.objects.all(), suppress=False, description="test")
    services.fail_deletion_job(job.pk, "worker died")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        post_action(client, "retry", [job], model="deletionjob")

    assert callbacks == []
    job.refresh_from_db()
    assert job.state == DeletionJob.State.FAILED
    assert Person.objects.count() == 1


def _suppress(workspace, customer_id, email):
    make_person(workspace, customer_id, email=email)
    person = Person.objects.get(workspace=workspace, customer_id=customer_id)
    services.delete_people(workspace, [person], suppress=True, source=Suppression.Source.ADMIN)
    return person.cio_id


def test_staff_without_unsuppress_permission_cannot_unsuppress(client, workspace):
    client.force_login(staff_with("people.view_suppression"))
    _suppress(workspace, "u1", "ann@example.com")
    suppression = Suppression.objects.get(identifier_type="id")

    page = client.get(changelist_url("suppression"))
    assert page.status_code == 200
    assert "unsuppress" not in page.content.decode()

    post_action(client, "unsuppress", [suppression], model="suppression")

    assert Suppression.objects.count() == 2
    result = services.identify_person(workspace, services.Ref("id", "u1"), {})
    assert result.outcome == "suppressed"
    assert not Person.objects.exists()


def test_unsuppress_frees_both_identifiers_of_the_person(client, workspace):
    client.force_login(staff_with("people.view_suppression", "people.unsuppress_suppression"))
    old_cio_id = _suppress(workspace, "u1", "Ann@Example.com")
    _suppress(workspace, "u2", "bob@example.com")  # someone else, who stays suppressed
    only_the_id = Suppression.objects.get(identifier_type="id", value="u1")

    response = post_action(client, "unsuppress", [only_the_id], model="suppression")

    assert response.status_code == 302
    assert any("Unsuppressed 2 identifiers" in text for text in message_texts(response))
    assert set(Suppression.objects.values_list("value", flat=True)) == {"u2", "bob@example.com"}
    # Both identifiers work again, and make a new person with no history.
    result = services.identify_person(
        workspace, services.Ref("email", "ANN@example.com"), {"id": "u1"})
    assert result.outcome == "created"
    assert result.person.customer_id == "u1"
    assert result.person.cio_id != old_cio_id
    assert Person.objects.get(workspace=workspace).pk == result.person.pk
    assert services.identify_person(
        workspace, services.Ref("id", "u2"), {}).outcome == "suppressed"


def test_unsuppressing_a_whole_group_counts_each_identifier_once(su_client, workspace):
    _suppress(workspace, "u1", "ann@example.com")

    response = post_action(su_client, "unsuppress", Suppression.objects.all(),
                           model="suppression")

    assert not Suppression.objects.exists()
    assert any("Unsuppressed 2 identifiers" in text for text in message_texts(response))


def test_suppression_search_is_case_insensitive_for_emails(su_client, workspace):
    _suppress(workspace, "u1", "Ann@Example.com")

    response = su_client.get(changelist_url("suppression"), {"q": "ANN@EXAMPLE.COM"})

    assert [s.value for s in response.context["cl"].result_list] == ["ann@example.com"]


# --- the other people changelists ------------------------------------------------------


@pytest.fixture
def some_of_everything(workspace, django_capture_on_commit_callbacks):
    make_full_person(workspace, "u1", email="ann@example.com")
    make_full_person(workspace, "u2", email="bob@example.com")
    _suppress(workspace, "u3", "cat@example.com")
    with django_capture_on_commit_callbacks(execute=False):
        services.start_deletion_job(
            workspace, Person.objects.filter(customer_id="u2"), suppress=False,
            description="test job")


@pytest.mark.parametrize("model", ["person", "suppression", "activity", "event",
                                   "deletionjob"])
def test_changelists_load_and_nothing_can_be_added(su_client, some_of_everything, model):
    model_class = {"person": Person, "suppression": Suppression, "activity": Activity,
                   "event": Event, "deletionjob": DeletionJob}[model]
    before = model_class.objects.count()
    assert before > 0

    response = su_client.get(changelist_url(model))
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == before
    assert not response.context["has_add_permission"]

    add_url = reverse(f"admin:people_{model}_add")
    assert su_client.get(add_url).status_code == 403
    assert su_client.post(add_url, {}).status_code == 403
    assert model_class.objects.count() == before


@pytest.mark.parametrize("model", ["activity", "event", "suppression", "deletionjob"])
def test_other_change_pages_are_read_only(su_client, some_of_everything, model):
    model_class = {"suppression": Suppression, "activity": Activity, "event": Event,
                   "deletionjob": DeletionJob}[model]
    obj = model_class.objects.order_by("pk").first()
    url = reverse(f"admin:people_{model}_change", args=[obj.pk])

    response = su_client.get(url)

    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()
    assert su_client.post(url, {}).status_code == 403
    delete_url = reverse(f"admin:people_{model}_delete", args=[obj.pk])
    assert su_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert model_class.objects.filter(pk=obj.pk).exists()


def test_activity_changelist_shows_forgotten_people_anonymously(su_client, workspace):
    cio_id = _suppress(workspace, "u1", "ann@example.com")
    kept = make_person(workspace, "u2")

    content = su_client.get(changelist_url("activity")).content.decode()

    assert "forgotten (anonymous)" in content
    assert f"cio_{kept.cio_id}" in content
    assert cio_id not in content


def test_other_workspaces_people_are_found_in_the_changelist(su_client):
    # Support staff see every workspace; the workspace filter narrows it down.
    first = make_workspace("First")
    second = make_workspace("Second")
    p1 = make_person(first, "u1")
    p2 = make_person(second, "u1")

    assert result_pks(su_client.get(changelist_url())) == {p1.pk, p2.pk}
    assert result_pks(su_client.get(changelist_url(), {"workspace__id__exact": second.pk})) == {
        p2.pk}
