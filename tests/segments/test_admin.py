"""The segments admin that support staff use: segments with their member counts and
conditions, membership jobs, and actions that go through the services."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from people.models import Person
from segments import operations
from segments import services as segments
from segments.models import MembershipJob, Segment
from tests.factories import UserFactory, make_person
from tests.people.test_admin import message_texts, staff_with

PRO = {"attribute": {"field": "plan", "operator": "eq", "value": "pro"}}


@pytest.fixture
def su_client(client, db):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def queued(monkeypatch):
    found = []
    monkeypatch.setattr(segments, "enqueue_recompute", found.append)
    return found


def segments_url(name="segment", action="changelist", *args):
    return reverse(f"admin:segments_{name}_{action}", args=args)


def post_action(client, action, objects, *, model="segment"):
    """POST a changelist action the way the admin's action bar does."""
    return client.post(segments_url(model), {
        "action": action, "index": "0", "select_across": "0",
        ACTION_CHECKBOX_NAME: [str(obj.pk) for obj in objects]})


def test_the_list_shows_member_counts_and_the_page_the_conditions(su_client, workspace):
    vip = segments.create_segment(workspace, name="VIP")
    segments.add_to_segment(vip, [make_person(workspace, f"u{n}").pk for n in range(3)])
    pro = segments.create_segment(workspace, name="Pro plan", conditions_tree=PRO)

    page = su_client.get(segments_url()).content.decode()
    assert "VIP" in page and "Pro plan" in page
    assert '<td class="field-members">3</td>' in page

    detail = su_client.get(segments_url("segment", "change", pro.pk)).content.decode()
    assert "&quot;operator&quot;: &quot;eq&quot;" in detail
    manual = su_client.get(segments_url("segment", "change", vip.pk)).content.decode()
    assert "manual: members are added and removed by hand" in manual


def test_the_list_is_one_query_for_its_counts(su_client, workspace, django_assert_max_num_queries):
    for n in range(5):
        segment = segments.create_segment(workspace, name=f"S{n}")
        segments.add_to_segment(segment, [make_person(workspace, f"p{n}").pk])
    su_client.get(segments_url())  # warm the session and content types
    with django_assert_max_num_queries(8):
        assert su_client.get(segments_url()).status_code == 200


def test_segments_cannot_be_added_edited_or_deleted_here(su_client, workspace):
    vip = segments.create_segment(workspace, name="VIP")
    assert su_client.get(segments_url("segment", "add")).status_code == 403
    response = su_client.post(segments_url("segment", "change", vip.pk), {"name": "Renamed"})
    assert response.status_code == 403
    post_action(su_client, "delete_selected", [vip])
    assert Segment.objects.filter(pk=vip.pk, name="VIP").exists()


def test_recompute_queues_live_data_driven_segments_only(su_client, workspace, queued):
    pro = segments.create_segment(workspace, name="Pro", conditions_tree=PRO)
    archived = segments.create_segment(workspace, name="Old", conditions_tree=PRO)
    segments.set_archived(archived, True)
    manual = segments.create_segment(workspace, name="VIP")
    queued.clear()

    response = post_action(su_client, "recompute", [pro, archived, manual])
    assert queued == [pro.pk]
    assert message_texts(response) == [
        "Queued a recompute of 1 segments. Skipped 2: manual or archived segments are not "
        "computed."]


def test_archive_and_unarchive_go_through_the_service(su_client, workspace, queued):
    pro = segments.create_segment(workspace, name="Pro", conditions_tree=PRO)
    queued.clear()
    post_action(su_client, "archive", [pro])
    pro.refresh_from_db()
    assert pro.archived and queued == []

    response = post_action(su_client, "unarchive", [pro])
    pro.refresh_from_db()
    assert not pro.archived
    assert queued == [pro.pk]  # brought back: computed again, as the service does
    assert message_texts(response)[-1] == "Unarchived 1 segments."


def test_actions_need_the_change_permission(client, workspace, queued):
    pro = segments.create_segment(workspace, name="Pro", conditions_tree=PRO)
    queued.clear()
    client.force_login(staff_with("segments.view_segment"))
    assert client.get(segments_url()).status_code == 200
    post_action(client, "archive", [pro])
    pro.refresh_from_db()
    assert not pro.archived

    client.force_login(staff_with("segments.view_segment", "segments.change_segment"))
    post_action(client, "archive", [pro])
    pro.refresh_from_db()
    assert pro.archived


def test_a_stopped_membership_job_is_listed_and_retried(su_client, workspace, monkeypatch):
    monkeypatch.setattr(MembershipJob, "batch_size", 2)  # three people: a queued job
    vip = segments.create_segment(workspace, name="VIP")
    for n in range(3):
        make_person(workspace, f"u{n}")
    job = operations.start_membership_job(
        vip, Person.objects.in_workspace(workspace), add=True,
        description="People page: 3 selected")
    MembershipJob.objects.filter(pk=job.pk).update(
        state=MembershipJob.State.FAILED, error="worker lost", updated_at=timezone.now())

    page = su_client.get(segments_url("membershipjob")).content.decode()
    assert "VIP" in page and "0 / 3 (0%)" in page

    response = post_action(su_client, "retry", [job], model="membershipjob")
    job.refresh_from_db()
    assert job.state == MembershipJob.State.RUNNING and job.error == ""
    assert message_texts(response) == ["Retrying 1 jobs."]
