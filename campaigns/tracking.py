"""Opens, clicks and unsubscribes of sent emails: what the sender asks of tracking.

The email sender (``campaigns.email``) calls these while it renders a message; this
module owns the signed tokens, the links stored per delivery, the open pixel, the
unsubscribe URL and headers, and the workspace's list of addresses the ESP refuses.
"""

from collections.abc import Iterable


def instrument_html(html: str, delivery_id: int, *, track: bool) -> tuple[str, list[str]]:
    """Return the HTML as sent and the links it points to through click redirects.

    With ``track``, every http(s) link becomes a signed redirect to the link's index in
    the returned list and an open pixel is added; the sender stores the list in the
    delivery's ``payload["links"]`` in the commit that marks it sent.
    """
    return html, []


def unsubscribe_url(delivery_id: int) -> str:
    """The absolute URL of the unsubscribe page of a delivery (``{% unsubscribe_url %}``)."""
    return ""


def unsubscribe_headers(delivery_id: int) -> dict[str, str]:
    """``List-Unsubscribe`` and ``List-Unsubscribe-Post`` headers of a delivery."""
    return {}


def suppressed_addresses(workspace_id: int, addresses: Iterable[str]) -> set[str]:
    """Those of ``addresses`` the workspace's ESP suppression list holds (bounces,
    complaints, added by hand), as given."""
    return set()
