"""The helpers every app's pages share: HTMX redirects, one job per dialog, capped counts,
keyset pages."""

from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory
from django_htmx.middleware import HtmxDetails

from engage import pages
from people.models import Person
from tests.factories import make_person


def _request(data=None, *, htmx=False, session=None):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    request = RequestFactory().post("/", data or {}, **headers)
    request.htmx = HtmxDetails(request)
    request.session = session if session is not None else SessionStore()
    return request


def test_an_htmx_request_is_redirected_the_htmx_way():
    plain = pages.htmx_redirect(_request(), "/deletions/3/")
    htmx = pages.htmx_redirect(_request(htmx=True), "/deletions/3/")

    assert (plain.status_code, plain["Location"]) == (302, "/deletions/3/")
    assert (htmx.status_code, htmx["HX-Redirect"]) == (200, "/deletions/3/")


def test_a_dialog_submitted_twice_finds_the_job_its_first_submit_started():
    session = SessionStore()
    token = pages.new_submit_token()
    first = _request({"token": token}, session=session)
    assert pages.started_job(first, "deletion_tokens") is None
    pages.remember_job(first, "deletion_tokens", 41)

    again = _request({"token": token}, session=session)
    other_dialog = _request({"token": pages.new_submit_token()}, session=session)
    other_kind = _request({"token": token}, session=session)

    assert pages.started_job(again, "deletion_tokens") == 41
    assert pages.started_job(other_dialog, "deletion_tokens") is None
    assert pages.started_job(other_kind, "membership_tokens") is None
    assert pages.new_submit_token() != token


def test_a_form_without_a_token_is_never_taken_for_a_double_submit():
    session = SessionStore()
    pages.remember_job(_request(session=session), "deletion_tokens", 41)

    assert session.get("deletion_tokens") is None
    assert pages.started_job(_request(session=session), "deletion_tokens") is None


def test_counts_stop_at_the_cap(workspace, monkeypatch):
    for number in range(4):
        make_person(workspace, f"u{number}")
    people = Person.objects.in_workspace(workspace)

    assert pages.capped_count(people, cap=5) == (4, False)
    assert pages.capped_count(people, cap=4) == (4, False)
    assert pages.capped_count(people, cap=3) == (3, True)
    monkeypatch.setattr(pages, "COUNT_CAP", 2)
    assert pages.capped_count(people) == (2, True)


def test_keyset_pages_walk_newest_first_to_the_end(workspace):
    made = [make_person(workspace, f"u{number}") for number in range(5)]
    people = Person.objects.in_workspace(workspace)

    first, after_first = pages.keyset_page(people, size=2)
    second, after_second = pages.keyset_page(people, size=2, before=after_first)
    last, after_last = pages.keyset_page(people, size=2, before=after_second)

    newest_first = [person.pk for person in reversed(made)]
    assert [[p.pk for p in page] for page in (first, second, last)] == [
        newest_first[:2], newest_first[2:4], newest_first[4:]]
    assert (after_first, after_second, after_last) == (newest_first[1], newest_first[3], None)
