"""Bounces over the App API, for SMTP setups that learn of them outside an ESP's webhooks.

``POST /v1/bounces`` with ``{"email", "type": "hard" | "soft" | "complaint",
"message_id"?, "event_id"?}`` records it as an ESP's report would be
(``campaigns.bounces.record_bounce``): idempotent, and an ``event_id`` seen before for
the message changes nothing. Errors keep the App API's ``{"meta": {"error": "..."}}``.
"""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from campaigns import bounces
from engage.api import AppView
from engage.schema import APP_RESPONSES
from people.errors import InvalidInput, Problem

BounceShape = inline_serializer("Bounce", fields={
    "email": serializers.EmailField(),
    "type": serializers.ChoiceField(bounces.BOUNCE_TYPES),
    "message_id": serializers.CharField(required=False,
                                        help_text="The Message-ID of the email that bounced."),
    "event_id": serializers.CharField(required=False,
                                      help_text="Your id of this report, to send it again safely."),
})
BounceResultShape = inline_serializer("BounceResult", fields={
    "email": serializers.CharField(),
    "type": serializers.CharField(),
    "suppressed": serializers.BooleanField(help_text="The address is on the suppression list."),
    "delivery_id": serializers.IntegerField(allow_null=True),
    "soft_bounces": serializers.IntegerField(),
    "duplicate": serializers.BooleanField(),
})


class BounceView(AppView):
    @extend_schema(summary="Report a bounce or spam complaint", request=BounceShape,
                   responses={200: BounceResultShape, **APP_RESPONSES},
                   description="A hard bounce or complaint puts the address on the "
                               "workspace's email suppression list and marks the message "
                               "(by `message_id`) bounced; a soft bounce is counted on it.")
    def post(self, request):
        body = self.body()
        problems = []
        email, kind = body.get("email"), body.get("type")
        if not bounces.valid_address(email):
            problems.append(Problem("email", "invalid", "email must be an email address"))
        if kind not in bounces.BOUNCE_TYPES:
            problems.append(Problem("type", "invalid", "type must be one of: "
                                                       + ", ".join(bounces.BOUNCE_TYPES)))
        for name in ("message_id", "event_id"):
            value = body.get(name)
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 500):
                problems.append(Problem(name, "invalid", f"{name} must be a string of 1 to "
                                                         "500 characters"))
        if problems:
            raise InvalidInput(problems)
        result = bounces.record_bounce(kind=kind, email=email, message_id=body.get("message_id"),
                                       event_id=body.get("event_id"), workspace=self.workspace)
        return Response({"email": email, "type": kind, "suppressed": result.suppressed,
                         "delivery_id": result.delivery_id, "soft_bounces": result.soft_bounces,
                         "duplicate": result.duplicate})
