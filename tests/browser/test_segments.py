"""Segment pages in a real browser: Delete Profiles, and adding people from the People page
(a few at once, or many as a job whose progress the browser follows)."""

import re

from playwright.sync_api import expect

from people.models import DeletionJob, Person
from segments import operations
from segments import services as segments
from segments.models import MembershipJob, Segment
from tests.factories import make_person


def test_delete_profiles_needs_the_exact_name_and_leaves_the_segment(editor_page, workspace):
    page = editor_page
    members = [make_person(workspace, name, email=f"{name}@example.com")
               for name in ("ada", "bob", "cy")]
    make_person(workspace, "keep")
    beta = segments.create_segment(workspace, name="Beta testers")
    segments.add_to_segment(beta, [person.pk for person in members])

    page.goto("/segments/")
    page.click("text=Beta testers")
    expect(page.locator("h1")).to_have_text("Beta testers")
    expect(page.locator("#people-count")).to_have_text(re.compile(r"^3 people"))
    page.click("#segment-actions summary")
    page.click("#delete-profiles")
    dialog = page.locator("#delete-profiles-dialog")
    expect(dialog).to_contain_text("Delete the 3 profiles in Beta testers?")

    page.fill("#delete-profiles-dialog input[name=name]", "beta testers")
    page.click("#confirm-delete-profiles")
    expect(page.locator("#delete-profiles-error")).to_contain_text("nothing was deleted")
    assert Person.objects.count() == 4 and DeletionJob.objects.count() == 0

    page.fill("#delete-profiles-dialog input[name=name]", "Beta testers")
    page.click("#confirm-delete-profiles")
    expect(page.locator("#job-state")).to_have_attribute("data-state", "done")
    expect(page.locator("#job-deleted")).to_have_text("3")
    assert list(Person.objects.values_list("customer_id", flat=True)) == ["keep"]
    assert DeletionJob.objects.count() == 1
    assert Segment.objects.filter(pk=beta.pk).exists()
    assert not operations.segment_members(beta).exists()

    page.goto(f"/segments/{beta.pk}/")
    expect(page.locator("#people-count")).to_have_text(re.compile(r"^0 people"))


def test_adding_two_people_to_a_manual_segment_from_the_people_page(editor_page, workspace):
    page = editor_page
    ada, bob, _ = (make_person(workspace, name, email=f"{name}@example.com")
                   for name in ("ada", "bob", "cy"))
    segments.create_segment(workspace, name="Alpha")
    vip = segments.create_segment(workspace, name="VIP")

    page.goto("/people/")
    page.check(f"input[name=person][value='{ada.pk}']")
    page.check(f"input[name=person][value='{bob.pk}']")
    page.click("#add-to-segment")
    dialog = page.locator("#membership-dialog")
    expect(dialog).to_contain_text("Add 2 people to a manual segment")
    page.select_option("#membership-dialog select[name=target]", label="VIP")
    page.click("#confirm-membership")

    page.wait_for_url(f"**/segments/{vip.pk}/")
    expect(page.locator("article.message")).to_contain_text("Added 2 people to VIP.")
    expect(page.locator("#people-count")).to_have_text(re.compile(r"^2 people"))
    expect(page.locator("#people-table tbody")).to_contain_text("ada@example.com")
    expect(page.locator("#people-table tbody")).to_contain_text("bob@example.com")
    expect(page.locator("#people-table tbody")).not_to_contain_text("cy@example.com")
    assert sorted(operations.segment_members(vip).values_list("customer_id", flat=True)) == [
        "ada", "bob"]


def test_adding_everyone_matching_a_filter_follows_the_jobs_progress(editor_page, workspace,
                                                                     monkeypatch):
    page = editor_page
    for number in range(60):  # more than one page of 50, and several batches
        make_person(workspace, f"u{number:02d}", plan="trial")
    make_person(workspace, "keep", plan="paid")
    trial = segments.create_segment(workspace, name="Trial")
    monkeypatch.setattr(MembershipJob, "batch_size", 25)
    # No worker has picked the job up yet: the test plays the worker, a batch at a time.
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)

    page.goto("/people/?field=plan&operator=eq&value=trial")
    page.check("#select-all")
    page.click("#add-to-segment")
    expect(page.locator("#membership-dialog")).to_contain_text("Add 60 people to a manual segment")
    page.click("#confirm-membership")

    expect(page.locator("#job-state")).to_contain_text("0 of 60 (0%)")
    job = MembershipJob.objects.get()
    operations.run_membership_job(job.pk, max_batches=1)
    expect(page.locator("#job-state")).to_contain_text("25 of 60 (41%)")  # the page polls
    operations.run_membership_job(job.pk)
    expect(page.locator("#job-state")).to_have_attribute("data-state", "done")
    expect(page.locator("#job-outcome")).to_have_text("Added 60 people to Trial.")
    page.reload()  # the outcome survives a reload
    expect(page.locator("#job-changed")).to_have_text("60")

    page.click("text=Back to Trial")
    expect(page.locator("#people-count")).to_have_text(re.compile(r"^60 people"))
    assert operations.segment_members(trial).count() == 60
