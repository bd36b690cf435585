"""Segment pages: the list, a segment's members, Delete Profiles, archiving, and adding
the People page's selection to manual segments or removing it."""

import pytest
from django.test import Client
from django.urls import reverse

from engage.models import Membership
from people import services as people_services
from people.models import DeletionJob, Person, Suppression
from segments import operations
from segments import services as segments
from segments.models import Membership as SegmentMembership
from segments.models import Segment
from tests.factories import make_member, make_person

LIST = reverse("segments:list")


def detail(segment):
    return reverse("segments:detail", args=[segment.pk])


def delete_profiles(segment):
    return reverse("segments:delete-profiles", args=[segment.pk])


def job_page(job, segment) -> str:
    """Return a deletion job's page, linking back to the segment it started from."""
    return reverse("deletionjob-detail", args=[job.pk]) + f"?from=%2Fsegments%2F{segment.pk}%2F"


def members_of(segment) -> list[str]:
    return sorted(operations.segment_members(segment).values_list("customer_id", flat=True))


def manual_segment(workspace, name, people=()):
    segment = segments.create_segment(workspace, name=name)
    segments.add_to_segment(segment, [person.pk for person in people])
    return segment


def data_driven_segment(workspace, name, tree):
    segment = segments.create_segment(workspace, name=name, conditions_tree=tree)
    segments.recompute_segment(segment)
    segment.refresh_from_db()
    return segment


# --- the list --------------------------------------------------------------------------


def test_segment_pages_need_a_login(client, workspace):
    beta = manual_segment(workspace, "Beta")
    for url in (LIST, detail(beta)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_the_list_shows_name_type_members_and_last_computed(client, viewer, workspace,
                                                            other_workspace):
    people = [make_person(workspace, f"u{n}", plan="pro" if n < 3 else "free")
              for n in range(5)]
    manual_segment(workspace, "Beta testers", people[:2])
    pro = data_driven_segment(workspace, "Pro plan",
                              {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}})
    manual_segment(other_workspace, "Theirs")

    response = client.get(LIST)
    assert response.status_code == 200
    rows = {segment.name: segment for segment in response.context["segments"]}
    assert set(rows) == {"Beta testers", "Pro plan"}
    assert (rows["Beta testers"].member_count, rows["Pro plan"].member_count) == (2, 3)
    body = response.content.decode()
    assert "Manual" in body and "Data-driven" in body
    assert pro.computed_at is not None and "Not yet" not in body  # last computed
    assert "(manual)" in body  # a manual segment is never computed
    assert "Theirs" not in body
    assert f'href="{detail(pro)}"' in body
    # Viewers get no way to create segments; the nav leads here from every page.
    assert "New segment" not in body
    assert f'href="{LIST}"' in client.get(reverse("person-list")).content.decode()


def test_the_list_caps_member_counts(client, viewer, workspace, monkeypatch):
    monkeypatch.setattr(operations, "MEMBER_COUNT_CAP", 2)
    manual_segment(workspace, "Big", [make_person(workspace, f"u{n}") for n in range(4)])
    response = client.get(LIST)
    assert response.context["segments"][0].member_count == 3  # the cap plus one, no more
    assert "More than 2" in response.content.decode()


def test_the_list_marks_archived_segments_and_puts_them_last(client, viewer, workspace):
    segments.set_archived(manual_segment(workspace, "Alpha"), True)
    manual_segment(workspace, "Zulu")
    response = client.get(LIST)
    assert [s.name for s in response.context["segments"]] == ["Zulu", "Alpha"]
    body = response.content.decode()
    assert body.count('class="archived"') == 1 and "Archived" in body


def test_editors_are_offered_a_new_segment(client, editor, workspace):
    body = client.get(LIST).content.decode()
    assert f'href="{reverse("segments:new")}"' in body


def _segments_with_members(workspace, count, start=0):
    for number in range(start, start + count):
        people = [make_person(workspace, f"s{number}p{n}") for n in range(3)]
        manual_segment(workspace, f"Segment {number}", people)


def test_the_list_query_count_does_not_grow_with_segments(client, editor, workspace,
                                                         django_assert_num_queries):
    _segments_with_members(workspace, 3)
    with django_assert_num_queries(5):
        first = client.get(LIST)
    _segments_with_members(workspace, 5, start=3)
    data_driven_segment(workspace, "Everyone", {"attribute": {"field": "plan",
                                                              "operator": "not_exists"}})
    with django_assert_num_queries(5):
        second = client.get(LIST)
    assert len(first.context["segments"]) == 3 and len(second.context["segments"]) == 9
    assert {s.member_count for s in second.context["segments"]} == {3, 24}


# --- a segment's page ------------------------------------------------------------------


def test_a_segments_page_lists_its_members_with_the_people_table(client, viewer, workspace):
    ada, bob, _ = (make_person(workspace, name, email=f"{name}@example.com")
                   for name in ("ada", "bob", "cy"))
    beta = manual_segment(workspace, "Beta", [ada, bob])
    response = client.get(detail(beta))
    assert response.status_code == 200
    assert [p.customer_id for p in response.context["people"]] == ["bob", "ada"]
    assert response.context["count"] == 2
    body = response.content.decode()
    assert "<h1>Beta</h1>" in body and 'id="people-table"' in body
    assert "bob@example.com" in body and "cy@example.com" not in body
    # A viewer is offered none of the actions.
    for action in ("Delete Profiles", "Archive", "Add to segment", "Remove from segment",
                   "Delete forever", 'name="person"', "Edit conditions"):
        assert action not in body, action


def test_editors_get_the_actions_menu_and_the_people_tables_actions(client, editor, workspace):
    ada = make_person(workspace, "ada", plan="pro")
    beta = manual_segment(workspace, "Beta", [ada])
    body = client.get(detail(beta)).content.decode()
    for action in ("Delete Profiles…", 'id="archive"', "Add to segment…",
                   "Remove from segment…", "Delete forever…", f'value="{ada.pk}"'):
        assert action in body, action
    # The table's actions apply to this segment's members: its form carries the filter.
    assert f'<input type="hidden" name="segment" value="{beta.pk}">' in body
    assert "Edit conditions" not in body  # a manual segment has none

    pro = data_driven_segment(workspace, "Pro", {"attribute": {"field": "plan",
                                                               "operator": "eq",
                                                               "value": "pro"}})
    body = client.get(detail(pro)).content.decode()
    assert f'href="{reverse("segments:edit", args=[pro.pk])}"' in body
    assert "&quot;plan&quot;" in body  # its conditions are shown
    assert "Last computed" in body


def test_a_segments_page_pages_its_members_and_htmx_gets_only_the_table(
        client, viewer, workspace, monkeypatch):
    from people import selection

    monkeypatch.setattr(selection, "PAGE_SIZE", 2)
    beta = manual_segment(workspace, "Beta", [make_person(workspace, f"u{n}") for n in range(3)])
    make_person(workspace, "outsider")
    first = client.get(detail(beta))
    assert [p.customer_id for p in first.context["people"]] == ["u2", "u1"]
    second = client.get(detail(beta), {"before": first.context["next_before"]},
                        HTTP_HX_REQUEST="true")
    body = second.content.decode()
    assert body.lstrip().startswith('<div id="people-table">') and "<nav>" not in body
    # Names as the table links them (a bare "u1" could occur in the random CSRF token).
    assert ">u0</a>" in body and ">u1</a>" not in body and ">outsider</a>" not in body


def test_the_segment_page_query_count_does_not_grow_with_members(client, editor, workspace,
                                                                 django_assert_num_queries):
    beta = manual_segment(workspace, "Beta", [make_person(workspace, f"u{n}") for n in range(3)])
    _segments_with_members(workspace, 3)
    with django_assert_num_queries(8):
        client.get(detail(beta))
    segments.add_to_segment(beta, [make_person(workspace, f"v{n}").pk for n in range(20)])
    with django_assert_num_queries(8):
        response = client.get(detail(beta))
    assert response.context["count"] == 23


def test_another_workspaces_segment_is_404(client, editor, other_workspace):
    theirs = manual_segment(other_workspace, "Theirs", [make_person(other_workspace, "them")])
    assert client.get(detail(theirs)).status_code == 404
    assert client.get(delete_profiles(theirs)).status_code == 404
    assert client.post(delete_profiles(theirs), {"name": "Theirs"}).status_code == 404
    assert client.post(reverse("segments:archive", args=[theirs.pk])).status_code == 404
    assert DeletionJob.objects.count() == 0
    assert not Segment.objects.get(pk=theirs.pk).archived


# --- Delete Profiles -------------------------------------------------------------------


def test_delete_profiles_asks_for_the_exact_name_and_shows_the_count(client, editor, workspace):
    beta = manual_segment(workspace, "Beta testers",
                          [make_person(workspace, f"u{n}") for n in range(3)])
    response = client.get(delete_profiles(beta), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<dialog id="delete-profiles-dialog"')
    assert "Delete the 3 profiles in Beta testers?" in body
    assert "Type <strong>Beta testers</strong> to confirm" in body
    assert "cannot be undone" in body and "The segment itself stays" in body
    assert "Also suppress their identifiers" in body
    # Without HTMX, the segment page opens with the dialog.
    page = client.get(delete_profiles(beta)).content.decode()
    assert "<h1>Beta testers</h1>" in page and 'id="delete-profiles-dialog"' in page


@pytest.mark.parametrize("typed", ["beta testers", "Beta", "Beta testers!", ""])
def test_a_wrong_name_is_refused_and_nothing_is_deleted(client, editor, workspace, typed,
                                                        django_capture_on_commit_callbacks):
    beta = manual_segment(workspace, "Beta testers", [make_person(workspace, "ada")])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(delete_profiles(beta), {"name": typed, "token": "t"},
                               HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="delete-profiles-dialog"' in body
    assert "nothing was deleted" in body or "This field is required" in body
    assert DeletionJob.objects.count() == 0 and members_of(beta) == ["ada"]
    # Without HTMX the refusal is a 400 with the same message.
    plain = client.post(delete_profiles(beta), {"name": typed})
    assert plain.status_code == 400 and 'id="delete-profiles-error"' in plain.content.decode()


def test_the_right_name_deletes_the_members_in_a_job_and_the_segment_stays(
        client, editor, workspace, django_capture_on_commit_callbacks):
    ada, bob, cy = (make_person(workspace, name, email=f"{name}@example.com")
                    for name in ("ada", "bob", "cy"))
    beta = manual_segment(workspace, "Beta testers", [ada, bob])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(delete_profiles(beta), {"name": "Beta testers", "token": "t1",
                                                      "count": "2"})
    job = DeletionJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == job_page(job, beta)
    assert (job.state, job.total, job.deleted, job.suppressed) == ("done", 2, 2, 0)
    assert job.description == "Delete Profiles of segment \u201cBeta testers\u201d"
    assert job.requested_by == editor and job.source == Suppression.Source.UI
    assert list(Person.objects.values_list("customer_id", flat=True)) == ["cy"]
    assert Segment.objects.filter(pk=beta.pk).exists() and members_of(beta) == []
    # A deleted (not suppressed) person can come back, as someone new.
    assert people_services.identify_person(workspace, people_services.Ref("id", "ada"),
                                           {}).outcome != "suppressed"
    # The same confirmation submitted again starts no second job.
    again = client.post(delete_profiles(beta), {"name": "Beta testers", "token": "t1",
                                                      "count": "2"})
    assert again["Location"] == response["Location"] and DeletionJob.objects.count() == 1


def test_delete_profiles_with_suppress_over_htmx(client, editor, workspace,
                                                 django_capture_on_commit_callbacks):
    ada = make_person(workspace, "ada", email="ada@example.com")
    beta = manual_segment(workspace, "Beta", [ada])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(delete_profiles(beta), {"name": "Beta", "suppress": "on",
                                                       "token": "t2", "count": "1"},
                               HTTP_HX_REQUEST="true")
    job = DeletionJob.objects.get()
    assert response["HX-Redirect"] == job_page(job, beta)
    assert (job.suppress, job.deleted, job.suppressed) == (True, 1, 2)
    assert people_services.identify_person(workspace, people_services.Ref("id", "ada"),
                                           {}).outcome == "suppressed"


def test_delete_profiles_deletes_the_set_as_it_was_when_confirmed(
        client, editor, workspace, django_capture_on_commit_callbacks):
    segment = data_driven_segment(workspace, "Free", {"attribute": {
        "field": "plan", "operator": "eq", "value": "free"}})
    make_person(workspace, "ada", plan="free")
    segments.recompute_segment(segment)
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(delete_profiles(segment), {"name": "Free", "token": "t3", "count": "1"})
    late = make_person(workspace, "late", plan="free")
    segments.recompute_segment(segment)  # joins after the confirmation
    for callback in callbacks:
        callback()
    assert DeletionJob.objects.get().deleted == 1
    assert list(Person.objects.values_list("pk", flat=True)) == [late.pk]


def test_members_who_joined_since_the_dialog_counted_them_stop_the_deletion(
        client, editor, workspace, django_capture_on_commit_callbacks):
    beta = manual_segment(workspace, "Beta", [make_person(workspace, f"u{n}") for n in range(4)])
    dialog = client.get(delete_profiles(beta), HTTP_HX_REQUEST="true").content.decode()
    assert "Delete the 4 profiles in Beta?" in dialog and 'name="count" value="4"' in dialog
    segments.add_to_segment(beta, [make_person(workspace, f"v{n}").pk for n in range(2)])

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(delete_profiles(beta), {"name": "Beta", "count": "4",
                                                       "token": "t"}, HTTP_HX_REQUEST="true")
    assert callbacks == [] and DeletionJob.objects.count() == 0 and Person.objects.count() == 6
    body = response.content.decode()
    assert response.status_code == 200 and "Delete the 6 profiles in Beta?" in body
    assert "members changed since you looked" in body and 'name="count" value="6"' in body
    plain = client.post(delete_profiles(beta), {"name": "Beta", "count": "4"})
    assert plain.status_code == 409 and "<h1>Beta</h1>" in plain.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        client.post(delete_profiles(beta), {"name": "Beta", "count": "6", "token": "t2"})
    assert DeletionJob.objects.get().deleted == 6 and Person.objects.count() == 0


def test_the_name_field_is_empty_not_greyed_with_the_name(client, editor, workspace):
    beta = manual_segment(workspace, "Beta testers", [make_person(workspace, "ada")])
    body = client.get(delete_profiles(beta), HTTP_HX_REQUEST="true").content.decode()
    assert "placeholder" not in body
    assert body.lstrip().startswith('<dialog id="delete-profiles-dialog" data-modal')


def test_a_segments_page_is_full_for_history_and_kept_apart_from_its_partial(
        client, viewer, workspace):
    beta = manual_segment(workspace, "Beta", [make_person(workspace, "ada")])
    restored = client.get(detail(beta), HTTP_HX_REQUEST="true",
                          HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<h1>Beta</h1>" in restored.content.decode()
    partial = client.get(detail(beta), HTTP_HX_REQUEST="true")
    assert "<h1>" not in partial.content.decode()
    for response in (restored, partial):
        assert "HX-Request" in response["Vary"] and "no-store" in response["Cache-Control"]


# --- archiving -------------------------------------------------------------------------


def test_editors_archive_and_unarchive(client, editor, workspace):
    beta = manual_segment(workspace, "Beta")
    response = client.post(reverse("segments:archive", args=[beta.pk]), follow=True)
    assert Segment.objects.get(pk=beta.pk).archived
    body = response.content.decode()
    assert "its members no longer change" in body and 'id="unarchive"' in body
    client.post(reverse("segments:unarchive", args=[beta.pk]))
    assert not Segment.objects.get(pk=beta.pk).archived


def test_an_archived_data_driven_segment_stops_changing(client, editor, workspace):
    pro = data_driven_segment(workspace, "Pro", {"attribute": {"field": "plan",
                                                               "operator": "eq",
                                                               "value": "pro"}})
    client.post(reverse("segments:archive", args=[pro.pk]))
    make_person(workspace, "ada", plan="pro")
    pro.refresh_from_db()
    segments.recompute_segment(pro)
    assert members_of(pro) == []


# --- roles and CSRF --------------------------------------------------------------------


def test_viewers_forged_posts_are_403(client, viewer, workspace,
                                      django_capture_on_commit_callbacks):
    ada = make_person(workspace, "ada")
    beta = manual_segment(workspace, "Beta", [ada])
    other = manual_segment(workspace, "Other")
    with django_capture_on_commit_callbacks(execute=True):
        forged = [
            client.get(delete_profiles(beta)),
            client.post(delete_profiles(beta), {"name": "Beta"}),
            client.post(reverse("segments:archive", args=[beta.pk])),
            client.post(reverse("segments:unarchive", args=[beta.pk])),
            client.post(reverse("segments:people-add-confirm"), {"person": [ada.pk]}),
            client.post(reverse("segments:people-add"), {"person": [ada.pk],
                                                         "target": other.pk}),
            client.post(reverse("segments:people-remove"), {"person": [ada.pk],
                                                            "target": beta.pk}),
        ]
    assert [response.status_code for response in forged] == [403] * 7
    assert DeletionJob.objects.count() == 0 and members_of(beta) == ["ada"]
    assert members_of(other) == [] and not Segment.objects.get(pk=beta.pk).archived


def test_posts_need_the_csrf_token(workspace):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_member(workspace, Membership.Role.EDITOR))
    ada = make_person(workspace, "ada")
    beta = manual_segment(workspace, "Beta", [ada])
    other = manual_segment(workspace, "Other")
    assert client.post(delete_profiles(beta), {"name": "Beta"}).status_code == 403
    assert client.post(reverse("segments:archive", args=[beta.pk])).status_code == 403
    assert client.post(reverse("segments:people-add"),
                       {"person": [ada.pk], "target": other.pk}).status_code == 403
    assert DeletionJob.objects.count() == 0 and members_of(other) == []
    assert not Segment.objects.get(pk=beta.pk).archived


# --- adding to and removing from manual segments ---------------------------------------

ADD_CONFIRM = reverse("segments:people-add-confirm")
ADD = reverse("segments:people-add")
REMOVE_CONFIRM = reverse("segments:people-remove-confirm")
REMOVE = reverse("segments:people-remove")


def test_the_people_page_offers_add_and_remove_to_editors_only(client, workspace):
    make_person(workspace, "ada")
    client.force_login(make_member(workspace, Membership.Role.EDITOR))
    body = client.get(reverse("person-list")).content.decode()
    assert f'hx-post="{ADD_CONFIRM}"' in body and f'hx-post="{REMOVE_CONFIRM}"' in body
    client.force_login(make_member(workspace, Membership.Role.VIEWER))
    body = client.get(reverse("person-list")).content.decode()
    assert "Add to segment" not in body and "Remove from segment" not in body


def test_the_dialog_counts_the_selection_and_offers_active_manual_segments(
        client, editor, workspace, other_workspace):
    people = [make_person(workspace, f"u{n}", plan="pro") for n in range(3)]
    manual_segment(workspace, "Beta")
    segments.set_archived(manual_segment(workspace, "Old"), True)
    data_driven_segment(workspace, "Pro", {"attribute": {"field": "plan", "operator": "exists"}})
    manual_segment(other_workspace, "Theirs")

    response = client.post(ADD_CONFIRM, {"person": [people[0].pk, people[2].pk]},
                           HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<dialog open id="membership-dialog">')
    assert "Add 2 people to a manual segment" in body
    assert body.count("<option") == 1 and ">Beta</option>" in body
    assert f'<input type="hidden" name="person" value="{people[2].pk}">' in body
    assert client.get(ADD_CONFIRM).status_code == 405

    everyone = client.post(REMOVE_CONFIRM, {"select_all": "1", "field": "plan",
                                            "operator": "eq", "value": "pro"})
    assert "Remove 3 people from a manual segment" in everyone.content.decode()


def test_the_remove_dialog_on_a_manual_segments_page_chooses_that_segment(client, editor,
                                                                          workspace):
    ada = make_person(workspace, "ada")
    manual_segment(workspace, "Alpha")
    beta = manual_segment(workspace, "Beta", [ada])
    response = client.post(REMOVE_CONFIRM, {"segment": beta.pk, "person": [ada.pk]})
    assert f'<option value="{beta.pk}" selected>Beta</option>' in response.content.decode()


def test_adding_the_ticked_people_to_a_manual_segment(client, editor, workspace):
    ada, bob, _ = (make_person(workspace, name) for name in ("ada", "bob", "cy"))
    beta = manual_segment(workspace, "Beta", [bob])
    response = client.post(ADD, {"person": [ada.pk, bob.pk], "target": beta.pk},
                           HTTP_HX_REQUEST="true")
    assert response["HX-Redirect"] == detail(beta)
    assert members_of(beta) == ["ada", "bob"]
    page = client.get(detail(beta)).content.decode()
    assert "Added 1 person to Beta." in page


def test_removing_people_from_a_manual_segment_from_its_own_page(client, editor, workspace):
    people = [make_person(workspace, f"u{n}") for n in range(4)]
    beta = manual_segment(workspace, "Beta", people[:3])
    # "Select all" on the segment's page carries the segment as the filter.
    client.post(REMOVE, {"select_all": "1", "segment": beta.pk, "target": beta.pk})
    assert members_of(beta) == []
    gamma = manual_segment(workspace, "Gamma", people)
    response = client.post(REMOVE, {"person": [people[0].pk], "target": gamma.pk}, follow=True)
    assert members_of(gamma) == ["u1", "u2", "u3"]
    assert "Removed 1 person from Gamma." in response.content.decode()


def test_only_active_manual_segments_of_this_workspace_change(client, editor, workspace,
                                                              other_workspace):
    ada = make_person(workspace, "ada", plan="pro")
    pro = data_driven_segment(workspace, "Pro", {"attribute": {"field": "plan",
                                                               "operator": "eq",
                                                               "value": "free"}})
    old = manual_segment(workspace, "Old")
    segments.set_archived(old, True)
    theirs = manual_segment(other_workspace, "Theirs")

    for target in (pro, old):
        response = client.post(ADD, {"person": [ada.pk], "target": target.pk})
        assert response.status_code == 400
        assert "Choose a manual segment that is not archived" in response.content.decode()
    assert client.post(ADD, {"person": [ada.pk], "target": theirs.pk}).status_code == 404
    assert client.post(ADD, {"person": [ada.pk], "target": "x"}).status_code == 404
    assert members_of(pro) == members_of(old) == members_of(theirs) == []


def test_another_workspaces_people_are_never_added(client, editor, workspace, other_workspace):
    theirs = make_person(other_workspace, "theirs")
    beta = manual_segment(workspace, "Beta")
    client.post(ADD, {"person": [theirs.pk], "target": beta.pk})
    assert SegmentMembership.objects.count() == 0


def test_an_unreadable_selection_is_a_bad_request(client, editor, workspace):
    beta = manual_segment(workspace, "Beta")
    assert client.post(ADD, {"person": ["x"], "target": beta.pk}).status_code == 400
    assert client.post(ADD_CONFIRM, {"person": ["x"]}).status_code == 400


def test_a_deletion_by_filter_names_the_filter_without_personal_values(workspace):
    from segments.forms import PeopleFilterForm

    def described(**data):
        form = PeopleFilterForm({"operator": "eq", **data}, workspace=workspace)
        assert form.is_valid(), form.errors
        return form.describe()

    assert described(field="plan", value="free") == "matching plan eq free"
    assert described(field="email", value="ada@example.com") == "matching email eq (a value)"
    assert described(field="note", value="ada@example.com") == "matching note eq (a value)"
