"""Opens, clicks and unsubscribes: signed tokens, no open redirect, one-click unsubscribe."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.core import signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns import engine, services, tracking
from campaigns.models import Campaign, Delivery
from people.models import Activity, Person
from segments.models import Membership, PendingEvaluation
from segments.services import create_segment, evaluate_pending
from tests.factories import make_person

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
MAIL = {"id": "mail", "type": "email", "from": "team@example.com", "to": "{{customer.email}}",
        "subject": "Hi", "body_html": "<p>Hi</p>"}
LINKS = ["https://example.com/pricing?plan=pro&ref=mail", "https://example.com/blog"]


@pytest.fixture
def travel():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def running_campaign(workspace, name="Welcome", steps=None) -> Campaign:
    segment = create_segment(workspace, name=f"{name} segment")
    campaign = services.create_campaign(workspace, {
        "name": name, "trigger": {"segments": {"segments": [{"id": segment.pk}]}},
        "exit": "never", "workflow": {"steps": steps or [MAIL]}})
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    return campaign


def sent_delivery(workspace, person, *, campaign=None, links=LINKS, message_id=None,
                  key="k") -> Delivery:
    """Return the delivery of ``campaign``'s email to ``person``, marked sent as the sender
    marks it (its rendered message, its tracked links)."""
    campaign = campaign or running_campaign(workspace, name=f"Campaign {key}")
    engine.enter(campaign, [engine.Entry(f"{key}:{person.pk}", person.pk, person.cio_id)])
    while engine.advance_due():
        pass
    delivery = Delivery.objects.get(campaign=campaign, cio_id=person.cio_id)
    rendered = {"from": "team@example.com", "to": person.email, "reply_to": None,
                "subject": "Hi", "message_id": message_id or f"<{delivery.pk}@engage.test>"}
    Delivery.objects.filter(pk=delivery.pk).update(
        state=Delivery.State.SENT, sent_at=timezone.now(),
        payload={**delivery.payload, "rendered": rendered, "links": list(links)})
    delivery.refresh_from_db()
    return delivery


def path_of(url: str) -> str:
    return urlsplit(url).path


@pytest.fixture
def ada(workspace):
    return make_person(workspace, "ada", email="ada@example.com")


# --- instrumenting the HTML ----------------------------------------------------------------


def test_instrumented_html_sends_links_through_signed_redirects_and_adds_a_pixel(settings):
    settings.ENGAGE_BASE_URL = "https://mail.example.org/"
    unsubscribe = tracking.unsubscribe_url(7)
    html = (f'<html><body><a href="{LINKS[0].replace("&", "&amp;")}">Pricing</a> '
            f"<A class=x HREF='{LINKS[1]}'>Blog</A> <a href=\"{LINKS[0]}\">again</a> "
            f'<a href="mailto:help@example.com">Mail us</a> <a href="#top">Top</a> '
            f'<a href="{unsubscribe}">Unsubscribe</a></body></html>')

    sent, links = tracking.instrument_html(html, 7, track=True)

    assert links == LINKS  # each URL once, unescaped, in order of appearance
    hrefs = re.findall(r'href="([^"]*)"', sent, re.IGNORECASE)
    assert hrefs[3:] == ["mailto:help@example.com", "#top", unsubscribe]
    assert hrefs[0] == hrefs[2] != hrefs[1]
    for index, href in enumerate(hrefs[:2]):
        assert href.startswith("https://mail.example.org/t/c/")
        token = path_of(href).rsplit("/", 1)[1]
        assert tracking.read_click_token(token) == (7, index)
    pixel = re.search(r'<img src="([^"]+)"[^>]*></body>', sent)
    assert pixel and tracking.read_open_token(path_of(pixel.group(1)).rsplit("/", 1)[1]) == 7


def test_untracked_html_is_left_as_it_is():
    html = f'<p><a href="{LINKS[0]}">x</a></p>'
    assert tracking.instrument_html(html, 7, track=False) == (html, [])


def test_a_pixel_is_appended_to_html_without_a_body():
    sent, links = tracking.instrument_html("<p>Hi</p>", 3, track=True)
    assert links == [] and sent.startswith("<p>Hi</p><img src=")


# --- tokens ----------------------------------------------------------------------------


def test_tokens_round_trip_and_are_salted_per_use():
    assert tracking.read_open_token(tracking.open_token(12)) == 12
    assert tracking.read_click_token(tracking.click_token(12, 3)) == (12, 3)
    assert tracking.read_unsubscribe_token(tracking.unsubscribe_token(12)) == 12
    # A token of one use is no token of another.
    assert tracking.read_unsubscribe_token(tracking.open_token(12)) is None
    assert tracking.read_open_token(tracking.unsubscribe_token(12)) is None
    assert tracking.read_click_token(tracking.open_token(12)) is None


def test_tokens_are_djangos_signatures_and_old_keys_still_unsign(settings):
    for salt, token in ((tracking.OPEN_SALT, tracking.open_token(12)),
                        (tracking.CLICK_SALT, tracking.click_token(12, 3)),
                        (tracking.UNSUBSCRIBE_SALT, tracking.unsubscribe_token(12))):
        assert token == signing.Signer(salt=salt).sign(token.split(":")[0])
    old = tracking.unsubscribe_token(12)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40

    assert tracking.unsubscribe_token(12) != old
    assert tracking.read_unsubscribe_token(old) == 12  # an email sent before the rotation


@pytest.mark.parametrize("forged", [
    "12", "12:", "13:" + tracking.open_token(12).split(":")[1], "x" * 40, "",
    signing.Signer(salt="another").sign("12"),
    signing.Signer(key="not-the-secret-key", salt=tracking.OPEN_SALT).sign("12"),
])
def test_forged_tokens_are_refused(forged):
    assert tracking.read_open_token(forged) is None
    assert tracking.read_unsubscribe_token(forged) is None
    assert tracking.read_click_token(forged) is None


def test_unsubscribe_tokens_never_expire(ada, workspace, travel):
    delivery = sent_delivery(workspace, ada)
    url = path_of(tracking.unsubscribe_url(delivery.pk))
    travel.move_to(START + timedelta(days=400))
    assert Client().post(url).status_code == 200
    assert Person.objects.get(pk=ada.pk).unsubscribed


# --- the open pixel and click redirects ------------------------------------------------------


def test_the_first_open_is_recorded_once(client, workspace, ada, travel):
    delivery = sent_delivery(workspace, ada)
    pixel = reverse("tracking:open", args=[tracking.open_token(delivery.pk)])

    response = client.get(pixel)
    assert response.status_code == 200 and response["Content-Type"] == "image/gif"
    assert "no-cache" in response["Cache-Control"]
    travel.shift(timedelta(hours=3))
    client.get(pixel)

    delivery.refresh_from_db()
    assert (delivery.opened_at, delivery.clicked_at) == (START, None)
    assert list(Activity.objects.filter(cio_id=ada.cio_id, kind__startswith="email_")
                .values_list("kind", "data")) == [
        ("email_opened", {"delivery": delivery.pk, "campaign": delivery.campaign_id,
                          "step": "mail"})]


def test_a_click_redirects_to_the_stored_link_and_counts_as_an_open(client, workspace, ada,
                                                                    travel):
    delivery = sent_delivery(workspace, ada)

    response = client.get(reverse("tracking:click", args=[tracking.click_token(delivery.pk, 0)]))

    assert response.status_code == 302 and response["Location"] == LINKS[0]
    delivery.refresh_from_db()
    assert delivery.opened_at == delivery.clicked_at == START
    travel.shift(timedelta(days=1))
    second = client.get(reverse("tracking:click", args=[tracking.click_token(delivery.pk, 1)]))
    assert second["Location"] == LINKS[1]
    delivery.refresh_from_db()
    assert delivery.clicked_at == START  # the first click stays
    assert list(Activity.objects.filter(cio_id=ada.cio_id, kind__startswith="email_")
                .values_list("kind", flat=True)) == ["email_clicked"]


def test_no_open_redirect(client, workspace, ada):
    delivery = sent_delivery(workspace, ada, links=[*LINKS, "javascript:alert(1)"])
    token = tracking.click_token(delivery.pk, 0)
    refused = [
        reverse("tracking:click", args=[tracking.click_token(delivery.pk, 3)]),  # no such link
        reverse("tracking:click", args=[tracking.click_token(delivery.pk, 2)]),  # not http(s)
        reverse("tracking:click", args=[tracking.click_token(delivery.pk + 99, 0)]),
        reverse("tracking:click", args=[token[:-2] + "xx"]),
        reverse("tracking:click", args=[f"{delivery.pk}.0:forged"]),
    ]
    for url in refused:
        response = client.get(url + "?next=https://evil.example.com")
        assert response.status_code == 404, url
        assert "Location" not in response
    # What the request carries never changes where the redirect goes.
    response = client.get(reverse("tracking:click", args=[token]) + "?url=https://evil.example")
    assert response["Location"] == LINKS[0]
    delivery.refresh_from_db()
    assert delivery.clicked_at is not None
    assert Delivery.objects.filter(clicked_at__isnull=False).count() == 1


def test_a_bad_open_token_answers_404_and_records_nothing(client, workspace, ada):
    delivery = sent_delivery(workspace, ada)
    response = client.get(reverse("tracking:open", args=[f"{delivery.pk}:forged"]))
    assert response.status_code == 404
    delivery.refresh_from_db()
    assert delivery.opened_at is None


def test_opens_and_clicks_re_evaluate_the_persons_segments(workspace, ada, travel,
                                                           django_capture_on_commit_callbacks):
    clicked = create_segment(workspace, name="Clicked", conditions_tree={
        "engagement": {"metric": "clicked", "within_days": 7}})
    delivery = sent_delivery(workspace, ada)
    PendingEvaluation.objects.all().delete()

    with django_capture_on_commit_callbacks(execute=False):
        Client().get(reverse("tracking:click", args=[tracking.click_token(delivery.pk, 0)]))

    assert PendingEvaluation.objects.filter(person_id=ada.pk).exists()
    evaluate_pending(workspace.pk)
    assert Membership.objects.filter(segment=clicked, person=ada).exists()


# --- unsubscribing ----------------------------------------------------------------------


def test_unsubscribe_headers_offer_one_click_and_a_mailto_when_set(settings):
    settings.ENGAGE_BASE_URL = "https://mail.example.org"
    settings.ENGAGE_UNSUBSCRIBE_MAILTO = ""
    headers = tracking.unsubscribe_headers(5)
    url = tracking.unsubscribe_url(5)
    assert url.startswith("https://mail.example.org/t/u/")
    assert headers == {"List-Unsubscribe": f"<{url}>",
                       "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}

    settings.ENGAGE_UNSUBSCRIBE_MAILTO = "unsubscribe@example.org"
    header = tracking.unsubscribe_headers(5)["List-Unsubscribe"]
    token = tracking.unsubscribe_token(5)
    assert header == (f"<{url}>, <mailto:unsubscribe@example.org?subject=unsubscribe%20"
                      f"{token.replace(':', '%3A')}>")


def test_get_only_shows_a_confirm_page(client, workspace, ada):
    delivery = sent_delivery(workspace, ada)
    url = path_of(tracking.unsubscribe_url(delivery.pk))

    page = client.get(url)

    assert page.status_code == 200
    html = page.content.decode()
    assert f'<form id="unsubscribe-form" method="post" action="{url}">' in html
    assert "<button" in html
    delivery.refresh_from_db()
    assert delivery.unsubscribed_at is None
    assert not Person.objects.get(pk=ada.pk).unsubscribed


def test_one_click_post_works_without_cookies_or_csrf(workspace, ada, travel):
    delivery = sent_delivery(workspace, ada)
    mail_client = Client(enforce_csrf_checks=True)  # no session, no CSRF cookie or token

    response = mail_client.post(path_of(tracking.unsubscribe_url(delivery.pk)),
                                {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200 and response.content == b"Unsubscribed."
    delivery.refresh_from_db()
    assert delivery.unsubscribed_at == START
    assert Person.objects.get(pk=ada.pk).unsubscribed


def test_the_confirm_button_unsubscribes_through_the_people_services(client, workspace, ada,
                                                                    travel):
    delivery = sent_delivery(workspace, ada)
    url = path_of(tracking.unsubscribe_url(delivery.pk))

    done = client.post(url)
    again = client.post(url)

    assert 'id="unsubscribed"' in done.content.decode() and again.status_code == 200
    delivery.refresh_from_db()
    assert delivery.unsubscribed_at == START
    # The identify service logged it, once.
    assert list(Activity.objects.filter(cio_id=ada.cio_id, kind=Activity.Kind.UNSUBSCRIBED)
                .values_list("kind", flat=True)) == ["unsubscribed"]
    # The person's next message of this kind is skipped, as for any unsubscribed person.
    later = running_campaign(workspace, name="Later")
    engine.enter(later, [engine.Entry("later", ada.pk, ada.cio_id)])
    while engine.advance_due():
        pass
    assert Delivery.objects.get(campaign=later).state == Delivery.State.SKIPPED


def test_unsubscribing_a_deleted_person_marks_only_the_delivery(client, workspace, ada):
    from people import services as people

    delivery = sent_delivery(workspace, ada)
    people.delete_person(workspace, people.Ref("id", "ada"))

    response = client.post(path_of(tracking.unsubscribe_url(delivery.pk)))

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.unsubscribed_at is not None
    assert not Person.objects.filter(cio_id=ada.cio_id).exists()  # nobody is created


def test_bad_unsubscribe_tokens_answer_404(client, workspace, ada):
    delivery = sent_delivery(workspace, ada)
    for token in (f"{delivery.pk}:forged", tracking.open_token(delivery.pk),
                  tracking.unsubscribe_token(delivery.pk + 99)):
        url = reverse("tracking:unsubscribe", args=[token])
        assert client.post(url).status_code == 404, token
        assert client.get(url).status_code == 404, token
    assert not Person.objects.get(pk=ada.pk).unsubscribed


def test_the_deploy_check_wants_an_https_base_url(settings):
    from campaigns.checks import check_base_url

    settings.ENGAGE_BASE_URL = "http://engage.example.com"
    assert [warning.id for warning in check_base_url(None)] == ["campaigns.W001"]
    settings.ENGAGE_BASE_URL = "https://engage.example.com"
    assert check_base_url(None) == []


def test_what_tracking_records_feeds_the_campaigns_metrics(client, workspace, ada, travel):
    from campaigns import bounces, metrics

    campaign = running_campaign(workspace)
    bob = make_person(workspace, "bob", email="bob@example.com")
    ada_mail = sent_delivery(workspace, ada, campaign=campaign, key="a")
    sent_delivery(workspace, bob, campaign=campaign, key="b", message_id="bob-1")

    client.get(reverse("tracking:click", args=[tracking.click_token(ada_mail.pk, 1)]))
    client.post(path_of(tracking.unsubscribe_url(ada_mail.pk)))
    bounces.record_bounce(kind="hard", message_id="bob-1")

    figures = metrics.campaign_metrics(campaign)["steps"]["mail"]
    assert {key: figures[key] for key in ("sent", "opened", "clicked", "bounced",
                                          "unsubscribed")} == {
        "sent": 2, "opened": 1, "clicked": 1, "bounced": 1, "unsubscribed": 1}


def test_tracking_urls_are_what_reverse_gives_on_the_base_url_set_now(settings):
    from django.urls import reverse

    for base in ("https://mail.example.com", "https://other.example.org/engage"):
        settings.ENGAGE_BASE_URL = base
        token = tracking.unsubscribe_token(7)
        assert tracking.unsubscribe_url(7) == base + reverse("tracking:unsubscribe",
                                                             args=[token])
        html, _ = tracking.instrument_html('<a href="https://example.com/x">x</a>', 7,
                                           track=True)
        click = base + reverse("tracking:click", args=[tracking.click_token(7, 0)])
        assert f'href="{click}"' in html
        assert tracking.tracking_base_url() == base + "/t/"
