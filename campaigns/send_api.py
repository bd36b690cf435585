"""Sending over the App API: transactional email and API-triggered broadcasts.

``POST /v1/send/email`` (``campaigns.transactional``) answers Customer.io's
``{"delivery_id", "queued_at"}``, and its errors ``{"meta": {"error"}}`` (400, 404 for a
transactional message that is not the workspace's). ``POST /v1/campaigns/{id}/triggers``
(``campaigns.broadcasts``) answers ``{"id"}`` at once while a worker enters the
recipients; a body it cannot use answers 422 in Customer.io's shape for it (``errors``
with a JSON pointer to the field) beside ``meta.error``; a second trigger within 10
seconds answers 429. ``GET /v1/campaigns/{id}/triggers/{trigger_id}`` shows how far it is.
"""

import re

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from campaigns import broadcasts, transactional
from campaigns.models import BroadcastTrigger, Campaign
from engage.api import AppView, app_exception_handler
from engage.errors import InvalidInput
from engage.schema import APP_NOT_FOUND, SingleError

# --- shapes ----------------------------------------------------------------------------

SendEmailRequest = inline_serializer("SendEmail", fields={
    "transactional_message_id": serializers.CharField(
        required=False, help_text="A transactional message's id, or its name."),
    "identifiers": serializers.DictField(
        help_text='Exactly one of {"id"}, {"email"} or {"cio_id"}; an unknown person is '
                  "created."),
    "to": serializers.CharField(required=False, help_text="Default: the person's email."),
    "from": serializers.CharField(required=False),
    "subject": serializers.CharField(required=False),
    "body": serializers.CharField(required=False, help_text="The HTML body."),
    "body_plain": serializers.CharField(required=False),
    "reply_to": serializers.CharField(required=False),
    "bcc": serializers.CharField(required=False),
    "headers": serializers.DictField(child=serializers.CharField(), required=False),
    "message_data": serializers.DictField(required=False,
                                          help_text="{{trigger.*}} in the templates."),
    "send_to_unsubscribed": serializers.BooleanField(required=False, default=True),
    "tracked": serializers.BooleanField(required=False, default=True),
    "queue_draft": serializers.BooleanField(required=False, default=False),
    "disable_message_retention": serializers.BooleanField(required=False, default=False),
    "send_at": serializers.IntegerField(required=False,
                                        help_text="Unix seconds, at most 90 days ahead."),
})
SendEmailResponse = inline_serializer("SendEmailResponse", fields={
    "delivery_id": serializers.CharField(),
    "queued_at": serializers.IntegerField(help_text="Unix seconds."),
})
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER,
    description="A retried request with the same key returns the first one's delivery.")

TriggerRequest = inline_serializer("BroadcastTrigger", fields={
    "data": serializers.DictField(required=False, help_text="{{trigger.*}}, at most 50 000 "
                                                            "bytes."),
    "recipients": serializers.DictField(required=False,
                                        help_text="A condition tree (the segment contract)."),
    "ids": serializers.ListField(child=serializers.CharField(), required=False),
    "emails": serializers.ListField(child=serializers.CharField(), required=False),
    "per_user_data": serializers.ListField(child=serializers.DictField(), required=False,
                                           help_text='[{"id" or "email", "data"}]'),
    "id_ignore_missing": serializers.BooleanField(required=False, default=False),
    "email_ignore_missing": serializers.BooleanField(required=False, default=False),
    "email_add_duplicates": serializers.BooleanField(required=False, default=False),
})
TriggerCreated = inline_serializer("BroadcastTriggerCreated", fields={
    "id": serializers.IntegerField()})
TriggerErrors = inline_serializer("BroadcastTriggerErrors", fields={
    "meta": inline_serializer("BroadcastTriggerErrorsMeta", fields={
        "error": serializers.CharField()}),
    "errors": serializers.ListField(child=inline_serializer("BroadcastTriggerError", fields={
        "detail": serializers.CharField(),
        "source": inline_serializer("BroadcastTriggerErrorSource", fields={
            "pointer": serializers.CharField()}),
        "status": serializers.CharField()})),
})
TriggerStatus = inline_serializer("BroadcastTriggerStatus", fields={
    "id": serializers.IntegerField(),
    "broadcast_id": serializers.IntegerField(),
    "created_at": serializers.IntegerField(),
    "processed_at": serializers.IntegerField(allow_null=True),
    "recipients_count": serializers.IntegerField(help_text="People entered so far."),
    "workflow_action_ids": serializers.ListField(child=serializers.CharField()),
    "data_file_position": serializers.IntegerField(),
    "data_file_processed": serializers.BooleanField(),
    "data_file_error_count": serializers.IntegerField(),
    "recipients_filter": serializers.JSONField(allow_null=True),
    "state": serializers.ChoiceField(BroadcastTrigger.State.values),
    "audience": serializers.CharField(),
    "total": serializers.IntegerField(),
    "done": serializers.IntegerField(),
    "progress": serializers.IntegerField(help_text="Percent."),
    "entered": serializers.IntegerField(),
    "skipped": serializers.IntegerField(),
    "error": serializers.CharField(),
    "errors": serializers.ListField(child=serializers.DictField()),
})


# --- errors ----------------------------------------------------------------------------


def _named(problem) -> str:
    """Return a problem's message naming its field, as ``send_at: must be ...``."""
    if not problem.field or problem.message.startswith(problem.field):
        return problem.message
    return f"{problem.field}: {problem.message}"


def _pointer(field: str) -> str:
    """Return a JSON pointer to a field named as ``per_user_data[2].email``."""
    return "/data/attributes/" + re.sub(r"\[(\d+)\]", r".\1", field).replace(".", "/")


def broadcast_exception_handler(exc, context):
    """Answer a trigger's bad input with 422 as Customer.io does, a busy broadcast 429."""
    if isinstance(exc, InvalidInput):
        return Response({
            "meta": {"error": "; ".join(_named(problem) for problem in exc.problems)},
            "errors": [{"detail": _named(problem), "source": {"pointer": _pointer(problem.field)},
                        "status": "422"} for problem in exc.problems],
        }, status=422)
    if isinstance(exc, broadcasts.RateLimited):
        return Response({"meta": {"error": str(exc)}}, status=429,
                        headers={"Retry-After": str(int(broadcasts.MIN_INTERVAL.total_seconds()))})
    if isinstance(exc, broadcasts.TriggerRefused):
        return Response({"meta": {"error": str(exc)}}, status=409)
    return app_exception_handler(exc, context)


def send_exception_handler(exc, context):
    """Answer as the App API does, each problem naming its field; 404 for a message that
    is not the workspace's."""
    if isinstance(exc, InvalidInput):
        return Response({"meta": {"error": "; ".join(_named(p) for p in exc.problems)}},
                        status=400)
    if isinstance(exc, transactional.MessageNotFound):
        return Response({"meta": {"error": str(exc)}}, status=404)
    return app_exception_handler(exc, context)


# --- views -----------------------------------------------------------------------------


class SendEmailView(AppView):
    exception_handler = send_exception_handler
    # Not the App API's 10 per second: Customer.io takes 3000 sends in 3 seconds. Off
    # unless ENGAGE_API_RATES has a "send" rate.
    throttle_scope = "send"

    @extend_schema(
        summary="Send a transactional email", operation_id="v1_send_email",
        parameters=[IDEMPOTENCY_KEY], request=SendEmailRequest,
        responses={200: SendEmailResponse, **APP_NOT_FOUND},
        description="Customer.io's body: a transactional message (id or name) or an inline "
                    "from, subject and body, and the person's identifiers. A suppressed "
                    "person is accepted and nothing is sent.")
    def post(self, request):
        delivery, _ = transactional.send_email(
            self.workspace, self.body(), idempotency_key=request.headers.get("Idempotency-Key"))
        return Response({"delivery_id": str(delivery.pk),
                         "queued_at": int(delivery.created_at.timestamp())})


class BroadcastView(AppView):
    exception_handler = broadcast_exception_handler

    def campaign(self, campaign_id) -> Campaign:
        campaign = (Campaign.objects.in_workspace(self.workspace).select_related("workspace")
                    .filter(pk=campaign_id).first())
        if campaign is None:
            raise NotFound(f"there is no broadcast {campaign_id}")
        return campaign


class BroadcastTriggerView(BroadcastView):
    @extend_schema(
        summary="Trigger an API-triggered broadcast", operation_id="v1_campaigns_triggers_create",
        request=TriggerRequest,
        responses={200: TriggerCreated, 409: SingleError, 422: TriggerErrors, **APP_NOT_FOUND},
        description="Choose one audience (recipients, ids, emails or per_user_data; none: "
                    "everyone the campaign's filters allow). The recipients are entered by a "
                    "worker: read the trigger's status for progress and errors. One trigger "
                    "per broadcast every 10 seconds (429); a campaign that is not a running "
                    "API-triggered broadcast answers 409.")
    def post(self, request, campaign_id):
        trigger = broadcasts.trigger_broadcast(self.campaign(campaign_id), self.body())
        return Response({"id": trigger.pk})


class BroadcastTriggerStatusView(BroadcastView):
    @extend_schema(summary="A broadcast trigger's status, progress and errors",
                   operation_id="v1_campaigns_triggers_retrieve",
                   responses={200: TriggerStatus, **APP_NOT_FOUND})
    def get(self, request, campaign_id, trigger_id):
        campaign = self.campaign(campaign_id)
        trigger = (BroadcastTrigger.objects.filter(campaign=campaign, pk=trigger_id)
                   .select_related("campaign").first())
        if trigger is None:
            raise NotFound(f"broadcast {campaign_id} has no trigger {trigger_id}")
        return Response(broadcasts.trigger_payload(trigger))
