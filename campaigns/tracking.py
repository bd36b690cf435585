"""Opens, clicks and unsubscribes of sent emails: what the sender asks of tracking.

The email sender (``campaigns.email``) calls these while it renders a message; this
module owns the signed tokens, the links stored per delivery, the open pixel, the
unsubscribe URL and headers, and the workspace's list of addresses the ESP refuses.
It also records what the tracking URLs report (``record_open``, ``record_click``,
``unsubscribe``), each once per delivery.

Tokens are signed with the secret key and a salt per use (``django.core.signing``), and
never expire: an unsubscribe link of a months-old email still works. A click token names
the delivery and the index of a link in ``Delivery.payload["links"]``: the redirect goes
only there, never to a URL the request carries.
"""

import hashlib
import hmac
import html as html_lib
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import quote

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes

from campaigns.models import Delivery, EmailSuppression
from engage.models import Workspace
from people import services as people
from people.models import Activity, Person
from people.services.common import announce_change, log_activity
from people.validation import email_key

OPEN_SALT = "engage.tracking.open"
CLICK_SALT = "engage.tracking.click"
UNSUBSCRIBE_SALT = "engage.tracking.unsubscribe"
# An <a> or <area> tag's href, quoted either way or not at all.
_HREF = re.compile(
    r"""(<(?:a|area)\b[^>]*?\bhref\s*=\s*)("([^"]*)"|'([^']*)'|([^\s"'>]+))""",
    re.IGNORECASE,
)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
SUPPRESSION_BATCH = 500


# --- tokens ------------------------------------------------------------------------------


def _signer(salt: str) -> signing.Signer:
    return _signer_for(salt, settings.SECRET_KEY)


@lru_cache(maxsize=16)
def _signer_for(salt: str, secret: str) -> signing.Signer:
    return _Signer(key=secret, salt=salt)  # made once: every message signs with it


class _Signer(signing.Signer):
    """A ``signing.Signer`` whose signatures under its key come from an HMAC keyed once:
    Django's derives the key and keys a new HMAC for every signature (ten a message).
    Its tokens are Django's, byte for byte; fallback keys still unsign."""

    def __init__(self, *, key: str, salt: str):
        super().__init__(key=key, salt=salt, algorithm="sha256")
        derived = hashlib.sha256(force_bytes(self.salt + "signer") + force_bytes(key)).digest()
        self._keyed = hmac.new(derived, digestmod=hashlib.sha256)

    def signature(self, value, key=None) -> str:
        if key is not None and key != self.key:  # a fallback key, while unsigning
            return super().signature(value, key)
        mac = self._keyed.copy()
        mac.update(force_bytes(value))
        return signing.b64_encode(mac.digest()).decode()


def open_token(delivery_id: int) -> str:
    return _signer(OPEN_SALT).sign(str(delivery_id))


def click_token(delivery_id: int, index: int) -> str:
    return _signer(CLICK_SALT).sign(f"{delivery_id}.{index}")


def unsubscribe_token(delivery_id: int) -> str:
    return _signer(UNSUBSCRIBE_SALT).sign(str(delivery_id))


def read_open_token(token: str) -> int | None:
    """Return the delivery an open token names, or None for a forged or broken one."""
    value = _unsign(OPEN_SALT, token)
    return int(value) if value is not None and value.isdigit() else None


def read_click_token(token: str) -> tuple[int, int] | None:
    """Return the (delivery, link index) a click token names, or None."""
    value = _unsign(CLICK_SALT, token)
    if value is None:
        return None
    delivery, _, index = value.partition(".")
    if not (delivery.isdigit() and index.isdigit()):
        return None
    return int(delivery), int(index)


def read_unsubscribe_token(token: str) -> int | None:
    """Return the delivery an unsubscribe token names, or None."""
    value = _unsign(UNSUBSCRIBE_SALT, token)
    return int(value) if value is not None and value.isdigit() else None


def _unsign(salt: str, token: str) -> str | None:
    try:
        return _signer(salt).unsign(token)
    except signing.BadSignature:
        return None


def absolute_url(path: str) -> str:
    """Return ``path`` on the public base URL (``ENGAGE_BASE_URL``)."""
    return settings.ENGAGE_BASE_URL.rstrip("/") + path


def tracking_base_url() -> str:
    """Return the absolute URL every tracking URL starts with (``.../t/``)."""
    return _tracking_url("tracking:open", "").removesuffix("o/")


def _tracking_url(name: str, token: str) -> str:
    """Return the absolute URL of a tracking route for a token, as ``reverse`` would (a
    signed token has only characters a URL path keeps as they are)."""
    before, after = _route(name, settings.ENGAGE_BASE_URL, settings.ROOT_URLCONF)
    return before + token + after


@lru_cache(maxsize=32)
def _route(name: str, base_url: str, urlconf: str) -> tuple[str, str]:
    """The absolute URL of a route around its token, reversed once, not per message."""
    placeholder = "TOKEN"
    return tuple(absolute_url(reverse(name, args=[placeholder])).split(placeholder, 1))


# --- the seam the sender calls ----------------------------------------------------------


def instrument_html(html: str, delivery_id: int, *, track: bool) -> tuple[str, list[str]]:
    """Return the HTML as sent and the links it points to through click redirects.

    With ``track``, every http(s) link becomes a signed redirect to the link's index in
    the returned list and an open pixel is added; the sender stores the list in the
    delivery's ``payload["links"]`` in the commit that marks it sent.
    """
    if not track:
        return html, []
    links: list[str] = []
    own = tracking_base_url()

    def redirect(match: re.Match) -> str:
        raw = next(group for group in match.groups()[2:] if group is not None)
        url = html_lib.unescape(raw).strip()
        # Only web links are tracked; the unsubscribe link and other tracking URLs stay.
        if not re.match(r"https?://", url, re.IGNORECASE) or url.startswith(own):
            return match.group(0)
        if url not in links:
            links.append(url)
        tracked = _tracking_url("tracking:click", click_token(delivery_id, links.index(url)))
        return f'{match.group(1)}"{html_lib.escape(tracked)}"'

    html = _HREF.sub(redirect, html)
    pixel_url = _tracking_url("tracking:open", open_token(delivery_id))
    pixel = (f'<img src="{html_lib.escape(pixel_url)}" width="1" height="1" alt="" '
             'style="display:block;width:1px;height:1px;border:0">')
    found = list(_BODY_END.finditer(html))
    if found:
        at = found[-1].start()
        html = html[:at] + pixel + html[at:]
    else:
        html += pixel
    return html, links


def unsubscribe_url(delivery_id: int) -> str:
    """The absolute URL of the unsubscribe page of a delivery (``{% unsubscribe_url %}``)."""
    return _tracking_url("tracking:unsubscribe", unsubscribe_token(delivery_id))


def unsubscribe_headers(delivery_id: int) -> dict[str, str]:
    """``List-Unsubscribe`` and ``List-Unsubscribe-Post`` headers of a delivery.

    The https URL takes RFC 8058's one-click POST; a mailto is added when
    ``ENGAGE_UNSUBSCRIBE_MAILTO`` names an address (its subject carries the token).
    """
    targets = [f"<{unsubscribe_url(delivery_id)}>"]
    mailto = settings.ENGAGE_UNSUBSCRIBE_MAILTO
    if mailto:
        subject = quote(f"unsubscribe {unsubscribe_token(delivery_id)}")
        targets.append(f"<mailto:{mailto}?subject={subject}>")
    return {"List-Unsubscribe": ", ".join(targets),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def suppressed_addresses(workspace_id: int, addresses: Iterable[str]) -> set[str]:
    """Those of ``addresses`` the workspace's ESP suppression list holds (bounces,
    complaints, added by hand), as given."""
    by_key: dict[str, list[str]] = {}
    for address in addresses:
        if address:
            by_key.setdefault(email_key(address.strip()), []).append(address)
    keys = list(by_key)
    found: set[str] = set()
    for start in range(0, len(keys), SUPPRESSION_BATCH):
        batch = keys[start:start + SUPPRESSION_BATCH]
        for key in (EmailSuppression.objects.filter(workspace_id=workspace_id, address__in=batch)
                    .values_list("address", flat=True)):
            found.update(by_key[key])
    return found


# --- what the tracking URLs record ------------------------------------------------------


def announce_engagement(delivery: Delivery) -> None:
    """Have the person's segments re-evaluated: an engagement of theirs changed."""
    announce_engagements([delivery])


def announce_engagements(deliveries: Iterable[Delivery]) -> None:
    """Have the segments of these deliveries' people re-evaluated (engagement conditions:
    sent, delivered, opened...), one query per workspace."""
    by_workspace: dict[int, set[str]] = {}
    for delivery in deliveries:
        if delivery.cio_id:
            by_workspace.setdefault(delivery.workspace_id, set()).add(delivery.cio_id)
    for workspace_id, cio_ids in by_workspace.items():
        person_ids = list(Person.objects.filter(workspace_id=workspace_id, cio_id__in=cio_ids)
                          .values_list("pk", flat=True))
        if person_ids:
            announce_change(Workspace(pk=workspace_id), person_ids)


def _first_time(delivery_id: int, moment: str, *, also: tuple[str, ...] = (),
                activity: str) -> bool:
    """Set the email's ``moment`` (and those in ``also`` not set yet) to now, unless it is
    set already, in one statement; log it to the person's activity and announce it.
    Tell whether it was the first time."""
    now = timezone.now()
    with transaction.atomic():
        changed = (Delivery.objects.filter(pk=delivery_id, kind=Delivery.Kind.EMAIL,
                                           **{f"{moment}__isnull": True})
                   .update(**{moment: now},
                           **{name: Coalesce(F(name), Value(now)) for name in also}))
        if not changed:
            return False
        delivery = Delivery.objects.select_related("workspace").get(pk=delivery_id)
        log_engagement(delivery, activity)
        announce_engagement(delivery)
    return True


def log_engagement(delivery: Delivery, kind: str) -> None:
    """Add what happened to a delivery to its person's activity log."""
    if delivery.cio_id:
        log_activity(delivery.workspace, delivery.cio_id, kind,
                     {"delivery": delivery.pk, "campaign": delivery.campaign_id,
                      "step": delivery.step_id})


def record_open(delivery_id: int) -> bool:
    """Record the first open of an email; tell whether this was it."""
    return _first_time(delivery_id, "opened_at", activity=Activity.Kind.EMAIL_OPENED)


def record_click(delivery_id: int) -> bool:
    """Record the first click of an email (a click is also an open); tell if it was new."""
    return _first_time(delivery_id, "clicked_at", also=("opened_at",),
                       activity=Activity.Kind.EMAIL_CLICKED)


def delivery_exists(delivery_id: int) -> bool:
    return Delivery.objects.filter(pk=delivery_id).exists()


def link_of(delivery_id: int, index: int) -> str | None:
    """Return the original URL of a tracked link of a delivery, or None."""
    payload = (Delivery.objects.filter(pk=delivery_id, kind=Delivery.Kind.EMAIL)
               .values_list("payload", flat=True).first())
    links = (payload or {}).get("links") or []
    if not isinstance(links, list) or not 0 <= index < len(links):
        return None
    url = links[index]
    if not isinstance(url, str) or not re.match(r"https?://", url, re.IGNORECASE):
        return None
    return url


def unsubscribe(delivery_id: int) -> Delivery | None:
    """Unsubscribe the person a delivery went to, through the people services.

    Sets the delivery's ``unsubscribed_at`` (the first time) and the person's
    ``unsubscribed`` (an identify by cio_id, which keeps the activity log and the
    suppression rules). Return the delivery, or None when there is none.
    """
    delivery = (Delivery.objects.select_related("workspace").filter(pk=delivery_id)
                .first())
    if delivery is None:
        return None
    with transaction.atomic():
        first = Delivery.objects.filter(pk=delivery_id, unsubscribed_at__isnull=True).update(
            unsubscribed_at=timezone.now())
        cio_id = delivery.cio_id
        if cio_id and Person.objects.filter(workspace_id=delivery.workspace_id,
                                            cio_id=cio_id).exists():
            people.identify_person(delivery.workspace, people.Ref("cio_id", cio_id),
                                   {"unsubscribed": True})
        if first:
            announce_engagement(delivery)
    delivery.refresh_from_db(fields=["unsubscribed_at"])
    return delivery
