"""System checks of the campaigns app's settings (``manage.py check --deploy``)."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def check_base_url(app_configs, **kwargs):
    """Warn when the links in sent emails would not be https (RFC 8058's one-click
    unsubscribe needs an https URL, and mail clients warn about plain http)."""
    if settings.ENGAGE_BASE_URL.startswith("https://"):
        return []
    return [Warning(
        f"ENGAGE_BASE_URL is {settings.ENGAGE_BASE_URL!r}: the tracking and unsubscribe "
        "links of sent emails are not https.",
        hint="Set ENGAGE_BASE_URL to the public https address of engage.",
        id="campaigns.W001")]
