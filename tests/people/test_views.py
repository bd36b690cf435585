"""The People page: search, filters, keyset pages and HTMX partials."""

import re

from django.urls import reverse

from people import services
from people.models import DeletionJob
from segments import services as segments
from tests.factories import make_person

URL = reverse("person-list")


def text_of(html: str) -> str:
    """Return the words a page shows, tags dropped and spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split()).replace(" .", ".")


def ids_in(response) -> list[str]:
    return [person.customer_id for person in response.context["people"]]


def test_people_page_needs_a_login(client, db):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_people_page_lists_newest_first_with_keyset_pages(client, viewer, workspace, settings,
                                                          monkeypatch):
    from people import selection

    monkeypatch.setattr(selection, "PAGE_SIZE", 3)
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


def test_the_people_page_stands_on_the_search_alone_when_no_app_adds_filters(
        client, editor, workspace, settings, django_capture_on_commit_callbacks):
    settings.PEOPLE_FILTER_FORM = "people.forms.PeopleSearchForm"
    beta = segments.create_segment(workspace, name="Beta")
    ada = make_person(workspace, "ada", email="ada@example.com")
    make_person(workspace, "bob")
    segments.add_to_segment(beta, [ada.pk])

    page = client.get(URL)
    assert [field.name for field in page.context["form"].visible_fields()] == ["q"]
    assert ids_in(page) == ["bob", "ada"]
    assert ids_in(client.get(URL, {"q": "ada@example.com"})) == ["ada"]
    assert ids_in(client.get(URL, {"segment": beta.pk})) == ["bob", "ada"]  # not a filter here
    with django_capture_on_commit_callbacks(execute=True):
        client.post(DELETE, {"q": "bob", "select_all": "1", "token": "t1", "count": "1"})
    assert list(workspace.people.values_list("customer_id", flat=True)) == ["ada"]


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
    from engage import pages

    monkeypatch.setattr(pages, "COUNT_CAP", 3)
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


# --- bulk deletion from the People page ------------------------------------------------

DELETE = reverse("person-bulk-delete")
CONFIRM = reverse("person-bulk-delete-confirm")


def test_viewers_are_not_offered_deletion_and_a_forged_post_is_403(client, viewer, workspace):
    ada = make_person(workspace, "ada")
    page = client.get(URL).content.decode()
    assert "Delete forever" not in page and 'name="person"' not in page
    assert client.post(CONFIRM, {"person": [ada.pk]}).status_code == 403
    assert client.post(DELETE, {"person": [ada.pk], "suppress": "1"}).status_code == 403
    assert workspace.people.filter(pk=ada.pk).exists()


def test_confirmation_shows_the_exact_count_and_the_suppress_choice(client, editor, workspace):
    people = [make_person(workspace, f"u{n}", plan="pro") for n in range(3)]
    response = client.post(CONFIRM, {"person": [people[0].pk, people[2].pk]})
    body = response.content.decode()
    assert "Delete 2 people forever?" in body
    assert "cannot be undone" in body
    assert "Also suppress their identifiers, so they can never be added again" in body
    assert workspace.people.count() == 3  # confirming deletes nothing


def test_deleting_the_ticked_people_with_suppression(client, editor, workspace,
                                                     django_capture_on_commit_callbacks):
    ada, bob, cy = (make_person(workspace, name, email=f"{name}@example.com")
                    for name in ("ada", "bob", "cy"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(DELETE, {"person": [ada.pk, bob.pk], "suppress": "1",
                                        "token": "t1", "count": "2"})
    assert response.status_code == 302
    job = DeletionJob.objects.get()
    assert response["Location"] == reverse("deletionjob-detail", args=[job.pk])
    assert (job.state, job.total, job.deleted, job.suppressed) == ("done", 2, 2, 4)
    assert list(workspace.people.values_list("customer_id", flat=True)) == ["cy"]
    assert services.identify_person(workspace, services.Ref("id", "ada"), {}).outcome == \
        "suppressed"
    # A second submit of the same confirmation starts nothing new.
    again = client.post(DELETE, {"person": [ada.pk, bob.pk], "suppress": "1", "token": "t1",
                                 "count": "2"})
    assert again["Location"] == response["Location"] and DeletionJob.objects.count() == 1


def test_select_all_deletes_the_set_matching_when_confirmed(client, editor, workspace,
                                                            django_capture_on_commit_callbacks):
    for number in range(5):
        make_person(workspace, f"u{number}", plan="free" if number < 4 else "pro")
    filters = {"field": "plan", "operator": "eq", "value": "free"}
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(DELETE, {**filters, "select_all": "1", "token": "t2", "count": "4"})
    make_person(workspace, "late", plan="free")  # matches only after the confirmation
    for callback in callbacks:
        callback()
    job = DeletionJob.objects.get()
    assert (job.total, job.deleted, job.suppressed) == (4, 4, 0)
    assert sorted(workspace.people.values_list("customer_id", flat=True)) == ["late", "u4"]
    assert job.description == "People page: all people matching plan eq free"


def test_deleting_never_reaches_another_workspace(client, editor, workspace, other_workspace,
                                                  django_capture_on_commit_callbacks):
    theirs = make_person(other_workspace, "theirs")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(DELETE, {"person": [theirs.pk], "count": "0"})
    assert other_workspace.people.filter(pk=theirs.pk).exists()
    assert DeletionJob.objects.get().total == 0


def test_job_page_shows_progress_and_polls_until_done(client, editor, workspace, settings):
    settings.ENGAGE_DELETE_BATCH_SIZE = 1
    people = [make_person(workspace, f"u{n}") for n in range(3)]
    job = services.start_deletion_job(workspace, workspace.people.all(), suppress=False,
                                      description="test")
    services.run_deletion_job(job.pk, max_batches=1)

    running = client.get(reverse("deletionjob-detail", args=[job.pk]), HTTP_HX_REQUEST="true")
    body = running.content.decode()
    assert 'hx-trigger="every 1s"' in body and "1 of 3 (33%)" in body
    services.run_deletion_job(job.pk)
    done = client.get(reverse("deletionjob-detail", args=[job.pk])).content.decode()
    assert "every 1s" not in done and "3 people were deleted." in text_of(done)
    assert people and client.get(reverse("deletionjob-list")).status_code == 200


def test_another_workspaces_job_is_404(client, editor, other_workspace):
    job = services.start_deletion_job(other_workspace, other_workspace.people.all(),
                                      suppress=False, description="theirs")
    assert client.get(reverse("deletionjob-detail", args=[job.pk])).status_code == 404


# --- the person page -------------------------------------------------------------------


def detail(person):
    return reverse("person-detail", args=[person.cio_id])


def test_person_page_shows_everything_about_them(client, viewer, workspace):
    beta = segments.create_segment(workspace, name="Beta")
    ada = make_person(workspace, "ada", email="ada@example.com", company={"name": "Acme"})
    segments.add_to_segment(beta, [ada.pk])
    services.add_device(workspace, services.Ref("id", "ada"), token="tok", platform="ios")
    for number in range(25):
        services.track_event(workspace, services.Ref("id", "ada"), name=f"e{number}")

    response = client.get(detail(ada))
    body = response.content.decode()
    assert '"company": {\n    "name": "Acme"' in body.replace("&quot;", '"')
    assert "Beta" in body and "tok" in body and "Created" in body
    assert [e.name for e in response.context["events"]][:2] == ["e24", "e23"]
    older = client.get(detail(ada), {"events_before": response.context["events_before"]},
                       HTTP_HX_REQUEST="true")
    rows = older.content.decode()
    assert "<td>e4</td>" in rows and "<td>e0</td>" in rows and "<td>e5</td>" not in rows
    assert "<nav>" not in rows and "Older events" not in rows
    assert "Delete forever" not in body  # a viewer


def test_editors_set_attributes_through_identify(client, editor, workspace):
    ada = make_person(workspace, "ada", plan="free")
    set_attribute = reverse("person-set-attribute", args=[ada.cio_id])
    client.post(set_attribute, {"name": "plan", "value": "pro"})
    client.post(set_attribute, {"name": "seats", "value": "3"})
    ada.refresh_from_db()
    assert ada.attributes == {"plan": "pro", "seats": 3}
    response = client.post(reverse("person-set-attribute", args=[ada.cio_id]),
                           {"name": "bio", "value": "x" * 1001}, follow=True)
    assert "cannot be longer than 1000 bytes" in response.content.decode()


def test_viewers_cannot_edit_or_delete_a_person(client, viewer, workspace):
    ada = make_person(workspace, "ada")
    assert client.post(reverse("person-set-attribute", args=[ada.cio_id]),
                       {"name": "plan", "value": "x"}).status_code == 403
    assert client.post(reverse("person-delete", args=[ada.cio_id])).status_code == 403
    assert workspace.people.filter(pk=ada.pk).exists()


def test_deleting_from_the_person_page_leaves_a_gone_page(client, editor, workspace):
    ada = make_person(workspace, "ada")
    response = client.post(reverse("person-delete", args=[ada.cio_id]), follow=True)
    assert response.status_code == 410
    assert "This person was deleted" in response.content.decode()
    assert not workspace.people.filter(pk=ada.pk).exists()

    bob = make_person(workspace, "bob", email="bob@example.com")
    response = client.post(reverse("person-delete", args=[bob.cio_id]), {"suppress": "1"},
                           follow=True)
    # Forgotten, so not even the deletion is tied to their page: the People page says so.
    assert response.status_code == 200
    assert response.redirect_chain == [(URL, 302)]
    body = response.content.decode()
    assert "The person was deleted and their identifiers suppressed" in body
    assert "bob" not in body and bob.cio_id not in body  # nor is anything of theirs shown
    assert services.identify_person(workspace, services.Ref("id", "bob"), {}).outcome == \
        "suppressed"


def test_another_workspaces_person_is_404(client, viewer, other_workspace):
    theirs = make_person(other_workspace, "theirs")
    assert client.get(detail(theirs)).status_code == 404


# --- back and forward, dialogs without HTMX, changed selections, errors, 403 ----------


def test_a_pushed_url_is_the_full_page_unless_htmx_swaps_it(client, viewer, workspace):
    make_person(workspace, "ada", plan="free")
    query = {"field": "plan", "operator": "eq", "value": "free"}
    partial = client.get(URL, query, HTTP_HX_REQUEST="true")
    assert partial.content.decode().lstrip().startswith('<div id="people-table">')
    # htmx restoring history asks with HX-Request too: that is the full page.
    restored = client.get(URL, query, HTTP_HX_REQUEST="true",
                          HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<nav>" in restored.content.decode() and "<h1>People</h1>" in restored.content.decode()
    # Caches keep the two apart, and the browser never replays either from its cache.
    for response in (partial, restored, client.get(URL, query)):
        assert "HX-Request" in response["Vary"]
        assert "no-store" in response["Cache-Control"]


def test_confirming_without_htmx_is_a_page_with_a_way_back(client, editor, workspace):
    ada = make_person(workspace, "ada")
    back = f"{URL}?field=plan&operator=exists"
    response = client.post(CONFIRM, {"person": [ada.pk], "from": back})
    body = response.content.decode()
    assert response.status_code == 200 and "<nav>" in body
    assert "Delete 1 person forever?" in body
    assert f'href="{back.replace("&", "&amp;")}" data-close>Cancel' in body
    nobody = client.post(CONFIRM, {"from": "https://elsewhere.example/"}).content.decode()
    assert "Delete 0 people forever?" in nobody and "<nav>" in nobody
    assert f'href="{URL}" data-close>Close' in nobody  # never a link off this site


def test_a_selection_that_grew_since_confirming_deletes_nothing(
        client, editor, workspace, django_capture_on_commit_callbacks):
    for number in range(5):
        make_person(workspace, f"u{number}", plan="free")
    filters = {"field": "plan", "operator": "eq", "value": "free", "select_all": "1"}
    dialog = client.post(CONFIRM, filters, HTTP_HX_REQUEST="true").content.decode()
    assert "Delete 5 people forever?" in dialog and 'name="count" value="5"' in dialog
    make_person(workspace, "u5", plan="free")
    make_person(workspace, "u6", plan="free")  # they start matching meanwhile

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(DELETE, {**filters, "count": "5", "token": "t"},
                               HTTP_HX_REQUEST="true")
    assert callbacks == [] and DeletionJob.objects.count() == 0
    assert workspace.people.count() == 7
    body = response.content.decode()
    assert "Delete 7 people forever?" in body and 'name="count" value="7"' in body
    assert "The selection changed since you looked" in body and "Nothing was deleted" in body
    # Confirmed again at the new count, all seven go.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(DELETE, {**filters, "count": "7", "token": "t2"})
    assert DeletionJob.objects.get().deleted == 7 and workspace.people.count() == 0


def test_ticked_rows_that_went_meanwhile_are_counted_again(client, editor, workspace):
    ada, bob, cy = (make_person(workspace, name) for name in ("ada", "bob", "cy"))
    services.delete_people(workspace, [cy], suppress=False)
    response = client.post(DELETE, {"person": [ada.pk, bob.pk, cy.pk], "count": "3"})
    assert response.status_code == 409 and "Delete 2 people forever?" in response.content.decode()
    assert DeletionJob.objects.count() == 0 and workspace.people.count() == 2


def test_the_job_page_says_what_was_deleted_in_sentences_and_links_back(
        client, editor, workspace, django_capture_on_commit_callbacks):
    beta = segments.create_segment(workspace, name="Beta")
    ada, bob = (make_person(workspace, name, plan="free") for name in ("ada", "bob"))
    segments.add_to_segment(beta, [ada.pk])
    back = f"{URL}?field=plan&operator=eq&value=free"
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(DELETE, {"field": "plan", "operator": "eq", "value": "free",
                                        "segment": beta.pk, "select_all": "1", "count": "1",
                                        "suppress": "1", "from": back})
    services.delete_people(workspace, [ada], suppress=False)  # gone before the worker runs
    for callback in callbacks:
        callback()
    job = DeletionJob.objects.get()
    assert response["Location"] == (reverse("deletionjob-detail", args=[job.pk])
                                    + "?from=%2Fpeople%2F%3Ffield%3Dplan%26operator%3Deq"
                                      "%26value%3Dfree")
    page = client.get(response["Location"]).content.decode()
    words = text_of(page)
    assert ("People page: all people matching in segment \u201cBeta\u201d and plan eq free, "
            "with their identifiers suppressed.") in words
    assert "0 people were deleted. 1 was already gone." in words
    assert "Finished " in words and "Done" not in words and "Deleted:" not in words
    assert f'<a id="job-back" href="{back.replace("&", "&amp;")}">' in page
    elsewhere = client.get(reverse("deletionjob-detail", args=[job.pk]),
                           {"from": "//elsewhere.example/"}).content.decode()
    assert 'id="job-back"' not in elsewhere
    assert bob and client.get(response["Location"], HTTP_HX_REQUEST="true").content.decode(
    ).lstrip().startswith('<div id="job-progress"')


def test_a_filter_error_is_shown_inside_the_swapped_table(client, viewer, workspace):
    make_person(workspace, "ada", plan="pro")
    response = client.get(URL, {"field": "plan", "operator": "gt", "value": "abc"},
                          HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="people-table">')
    assert "needs a number" in body and "Fix the filters above" in body
    assert body.count('id="people-table"') == 1
    full = client.get(URL, {"field": "plan", "operator": "gt", "value": "abc"}).content.decode()
    assert full.count("needs a number") == 1  # once, in the table, not beside the field too
    assert 'hx-target="#people-table" hx-swap="outerHTML"' in full


def test_a_viewers_forged_request_gets_a_styled_403_page(client, viewer, workspace):
    ada = make_person(workspace, "ada")
    response = client.post(DELETE, {"person": [ada.pk], "count": "1"})
    assert response.status_code == 403
    body = response.content.decode()
    assert "<nav>" in body and 'id="forbidden"' in body and "Viewer" in body.title()
