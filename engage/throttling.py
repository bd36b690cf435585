"""Per-key request rates: the App API at 10/s by default, Track off unless configured."""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class ScopedWorkspaceThrottle(SimpleRateThrottle):
    """Limit each workspace key by the view's ``throttle_scope`` rate in ENGAGE_API_RATES."""

    def allow_request(self, request, view):
        self.scope = getattr(view, "throttle_scope", None)
        self.rate = settings.ENGAGE_API_RATES.get(self.scope) if self.scope else None
        if not self.rate:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_rate(self):
        return None

    def get_cache_key(self, request, view):
        if request.user is None or not getattr(request.user, "is_authenticated", False):
            return None
        return f"throttle_{self.scope}_{request.user.pk}"
