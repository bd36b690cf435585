"""Track API endpoints that trigger campaigns: form submissions and data campaign webhooks."""

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns import triggers
from engage.api import AlwaysJSON, TrackV1View, ok, track_v1_exception_handler
from engage.schema import TRACK_RESPONSES, Empty, TrackErrors

MAX_WEBHOOK_BYTES = 32 * 1024  # as a v2 operation
REQUEST_ID_HEADERS = ("HTTP_IDEMPOTENCY_KEY", "HTTP_X_REQUEST_ID")

FormBody = inline_serializer("FormSubmission", fields={
    "data": serializers.DictField(help_text="The form's fields; `id` or `email` names the "
                                            "person, every field is stored as an attribute."),
})


def _request_id(request) -> str | None:
    """Return the caller's id for this request (a replay with it starts nothing new)."""
    for header in REQUEST_ID_HEADERS:
        value = request.META.get(header, "").strip()
        if value:
            return value[:150]
    return None


class FormSubmitView(TrackV1View):
    @extend_schema(summary="Submit a form", request=FormBody,
                   responses={204: None, **{k: v for k, v in TRACK_RESPONSES.items()
                                            if k != 200}},
                   description="Identifies the person by `data.id` or `data.email`, stores "
                               "the fields as attributes and enters them into the running "
                               "campaigns triggered by this form. A suppressed person is "
                               "accepted and ignored.")
    def post(self, request, form_id):
        data = self.body().get("data")
        if not isinstance(data, dict):
            raise exceptions.ParseError("data is required and must be an object")
        triggers.submit_form(self.workspace, form_id, data, submission_id=_request_id(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookTriggerView(APIView):
    """The secret URL of a data campaign: any JSON starts a journey carrying it."""

    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AlwaysJSON
    throttle_classes = []

    def get_exception_handler(self):
        return track_v1_exception_handler

    @extend_schema(summary="Send data to a data campaign", request=OpenApiTypes.ANY,
                   responses={200: Empty, 400: TrackErrors, 404: TrackErrors,
                              413: TrackErrors},
                   description="The body (any JSON, at most 32 KB) is `{{trigger.*}}` in "
                               "the campaign's steps. 404 when no running campaign has this "
                               "URL. An `Idempotency-Key` header makes a resent call harmless.")
    def post(self, request, token):
        if len(request.body) > MAX_WEBHOOK_BYTES:
            return Response({"meta": {"errors": [
                f"the request cannot be larger than {MAX_WEBHOOK_BYTES // 1024} KB"]}},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            raise exceptions.ParseError("the request body must be JSON") from None
        if triggers.receive_webhook(token, body, request_id=_request_id(request)) is None:
            raise exceptions.NotFound("there is no running campaign at this URL")
        return ok()
