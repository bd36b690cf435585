"""Customer.io-compatible endpoints for people: Track API v1 writes and App API reads."""

import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from engage.api import AppView, TrackV1View, TrackV2View, app_exception_handler, ok
from engage.schema import APP_RESPONSES, TRACK_RESPONSES, Empty, SingleError
from people import batch, services
from people import validation as v
from people.api_params import ID_TYPE, app_ref, id_type_param
from people.errors import InvalidInput
from people.models import Person, Suppression
from people.validation import email_key

DEVICE_KEYS = {"id", "platform", "last_used", "attributes", "_last_status"}

IDENTIFIER = OpenApiParameter(
    "identifier", str, OpenApiParameter.PATH,
    description="An id, an email (where email is an identifier) or `cio_<cio_id>`, "
                "percent-encoded; read by its shape.",
)
EVENT_FIELDS = {
    "name": serializers.CharField(max_length=100, help_text="Required; at most 100 bytes."),
    "data": serializers.DictField(required=False, help_text="At most 100,000 bytes as JSON."),
    "timestamp": serializers.IntegerField(required=False, help_text="Unix seconds."),
    "id": serializers.CharField(required=False, help_text="A ULID; a repeated id is ignored."),
    "type": serializers.ChoiceField(["event", "page", "screen"], required=False),
}
EventBody = inline_serializer("TrackEvent", fields=EVENT_FIELDS)
AnonymousEventBody = inline_serializer("TrackAnonymousEvent", fields={
    **EVENT_FIELDS, "anonymous_id": serializers.CharField(required=False),
})
DeviceBody = inline_serializer("TrackDevice", fields={
    "device": inline_serializer("TrackDeviceFields", fields={
        "id": serializers.CharField(help_text="The device token."),
        "platform": serializers.ChoiceField(["ios", "android"]),
        "last_used": serializers.IntegerField(required=False, help_text="Unix seconds."),
        "attributes": serializers.DictField(required=False),
    }),
})
MergeBody = inline_serializer("MergeCustomers", fields={
    "primary": serializers.DictField(help_text='Exactly one of {"id"|"email"|"cio_id": value}.'),
    "secondary": serializers.DictField(help_text="The same shape; this person is deleted."),
})
Region = inline_serializer("Region", fields={
    "url": serializers.CharField(), "region": serializers.CharField(),
    "environment_id": serializers.IntegerField(),
})


class CustomerView(TrackV1View):
    """``PUT`` identifies (creates or updates) a person; ``DELETE`` deletes them."""

    @extend_schema(
        summary="Identify a person", parameters=[IDENTIFIER], request=OpenApiTypes.OBJECT,
        responses=TRACK_RESPONSES,
        description="Create or update a person. Top-level keys are attributes; `id`, "
                    "`email`, `created_at` (unix seconds), `anonymous_id`, `_update`, "
                    "`_timestamp` and `unsubscribed` have their Customer.io meaning.",
    )
    def put(self, request, identifier):
        ref = services.parse_identifier(self.workspace, identifier)
        services.identify_person(self.workspace, ref, self.body())
        return ok()

    @extend_schema(summary="Delete a person and all their data", parameters=[IDENTIFIER],
                   request=None, responses=TRACK_RESPONSES)
    def delete(self, request, identifier):
        ref = services.parse_identifier(self.workspace, identifier)
        services.delete_person(self.workspace, ref, source=Suppression.Source.API)
        return ok()


def _event_fields(body: dict) -> dict:
    kind = body.get("type")
    if problems := v.event_type_problems(kind):
        raise InvalidInput(problems)
    return {
        "name": body.get("name"),
        "data": body.get("data"),
        "timestamp": body.get("timestamp"),
        "dedup_id": body.get("id"),
        "type": kind or "event",
    }


class CustomerEventView(TrackV1View):
    @extend_schema(summary="Track an event", parameters=[IDENTIFIER], request=EventBody,
                   responses=TRACK_RESPONSES)
    def post(self, request, identifier):
        ref = services.parse_identifier(self.workspace, identifier)
        services.track_event(self.workspace, ref, **_event_fields(self.body()))
        return ok()


class AnonymousEventView(TrackV1View):
    @extend_schema(summary="Track an anonymous event", request=AnonymousEventBody,
                   responses=TRACK_RESPONSES)
    def post(self, request):
        body = self.body()
        services.track_anonymous_event(
            self.workspace, anonymous_id=body.get("anonymous_id"), **_event_fields(body)
        )
        return ok()


class DeviceView(TrackV1View):
    @extend_schema(summary="Add or update a device", parameters=[IDENTIFIER],
                   request=DeviceBody, responses=TRACK_RESPONSES)
    def put(self, request, identifier):
        device = self.body().get("device")
        if not isinstance(device, dict):
            raise exceptions.ParseError("device is required and must be an object")
        if v.has_unstorable(device.get("id")):
            raise InvalidInput.single("device.id", "invalid_value", "device.id cannot contain "
                                      "NUL characters or unpaired surrogates")
        attributes = device.get("attributes", {})
        if not isinstance(attributes, dict):
            raise InvalidInput.single("device.attributes", "invalid_type",
                                      "device.attributes must be an object")
        else:
            # The Python client sends extra device keys beside id and platform.
            attributes = {**{k: val for k, val in device.items() if k not in DEVICE_KEYS},
                          **attributes}
        services.add_device(
            self.workspace,
            services.parse_identifier(self.workspace, identifier),
            token=device.get("id"),
            platform=device.get("platform"),
            last_used=device.get("last_used"),
            attributes=attributes,
        )
        return ok()


class DeviceDeleteView(TrackV1View):
    @extend_schema(summary="Delete a device", parameters=[IDENTIFIER], request=None,
                   responses=TRACK_RESPONSES)
    def delete(self, request, identifier, token):
        ref = services.parse_identifier(self.workspace, identifier)
        if v.has_unstorable(token):
            raise InvalidInput.single("token", "invalid_value", "the device token cannot contain "
                                      "NUL characters or unpaired surrogates")
        services.delete_device(self.workspace, ref, token=token)
        return ok()


class SuppressView(TrackV1View):
    @extend_schema(summary="Delete a person and suppress their identifiers",
                   parameters=[IDENTIFIER], request=None, responses=TRACK_RESPONSES)
    def post(self, request, identifier):
        ref = services.parse_identifier(self.workspace, identifier)
        services.suppress_identifier(self.workspace, ref, source=Suppression.Source.API)
        return ok()


class UnsuppressView(TrackV1View):
    @extend_schema(summary="Unsuppress identifiers", parameters=[IDENTIFIER], request=None,
                   responses=TRACK_RESPONSES)
    def post(self, request, identifier):
        services.unsuppress_identifier(
            self.workspace, services.parse_identifier(self.workspace, identifier)
        )
        return ok()


class MergeView(TrackV1View):
    """Merge the secondary person into the primary; errors as ``{"meta":{"error":...}}``."""

    exception_handler = app_exception_handler

    @extend_schema(summary="Merge two people", request=MergeBody,
                   responses={**APP_RESPONSES, 200: Empty, 413: SingleError, 415: SingleError})
    def post(self, request):
        body = self.body()
        primary = self._side(body, "primary")
        secondary = self._side(body, "secondary")
        services.merge_people(self.workspace, primary=primary, secondary=secondary)
        return ok()

    def _side(self, body: dict, name: str) -> services.Ref:
        side = body.get(name)
        if not isinstance(side, dict) or len(side) != 1:
            raise services.InvalidInput.single(
                name, "invalid", f"{name} must name exactly one identifier: id, email or cio_id"
            )
        ((kind, value),) = side.items()
        return services.make_ref(self.workspace, kind, value, field=name)


class RegionView(TrackV1View):
    @extend_schema(summary="Region of these credentials",
                   responses={**TRACK_RESPONSES, 200: Region})
    def get(self, request):
        return Response({
            "url": request.build_absolute_uri("/").rstrip("/"),
            "region": "us",
            "environment_id": self.workspace.pk,
        })


# --- Track API v2 -----------------------------------------------------------------------

V2Errors = inline_serializer("V2Errors", fields={"errors": serializers.ListField(
    child=inline_serializer("V2Error", fields={
        "reason": serializers.CharField(), "field": serializers.CharField(),
        "message": serializers.CharField()}))})
V2BatchErrors = inline_serializer("V2BatchErrors", fields={"errors": serializers.ListField(
    child=inline_serializer("V2BatchError", fields={
        "batch_index": serializers.IntegerField(), "reason": serializers.CharField(),
        "field": serializers.CharField(), "message": serializers.CharField()}))})
V2_RESPONSES = {200: TRACK_RESPONSES[200], 400: V2Errors, 401: V2Errors, 413: V2Errors}


def _check_size(request, limit: int) -> None:
    if len(request.body) > limit:
        raise services.InvalidInput.single(
            "", "too_large", f"the request cannot be larger than {limit // 1024} KB")


class EntityView(TrackV2View):
    @extend_schema(summary="Apply one operation", request=OpenApiTypes.OBJECT,
                   responses=V2_RESPONSES,
                   description="A person operation: identify, delete, event, page, screen, "
                               "add_device, delete_device, merge, suppress or unsuppress. "
                               "At most 32 KB.")
    def post(self, request):
        _check_size(request, batch.MAX_OPERATION_BYTES)
        operation = batch.parse_operation(self.workspace, self.body())
        batch.apply_operation(self.workspace, operation)
        return ok()


class BatchView(TrackV2View):
    @extend_schema(
        summary="Apply many operations",
        request=inline_serializer("Batch", fields={
            "batch": serializers.ListField(child=serializers.DictField())}),
        responses={**V2_RESPONSES, 207: V2BatchErrors},
        description="Operations as for /entity, applied in order; the valid ones are applied "
                    "and the invalid ones reported by batch_index with status 207. A batch is "
                    "stored whole or not at all: after an error (5xx) nothing of it is "
                    "stored, so it can be sent again. At most 500 KB, and 32 KB an operation.",
    )
    def post(self, request):
        _check_size(request, batch.MAX_BATCH_BYTES)
        operations = self.body().get("batch")
        if not isinstance(operations, list):
            raise services.InvalidInput.single("batch", "required",
                                               "batch must be a list of operations")
        errors = batch.apply_batch(self.workspace, operations)
        if errors:
            return Response({"errors": [error.as_json() for error in errors]}, status=207)
        return ok()


# --- App API reads ---------------------------------------------------------------------


def _as_text(value) -> str:
    """Return an attribute value as the App API shows it: always a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def customer_payload(person: Person) -> dict:
    attributes = {key: _as_text(value) for key, value in person.attributes.items()}
    attributes["cio_id"] = person.cio_id
    if person.customer_id is not None:
        attributes["id"] = person.customer_id
    if person.email:
        attributes["email"] = person.email
    attributes.setdefault("created_at", str(int(person.created_at.timestamp())))
    return {
        "id": person.customer_id,
        "attributes": attributes,
        # Per-attribute change times are not kept; the identifiers' are the profile's.
        "timestamps": {"cio_id": int(person.created_at.timestamp())},
        "unsubscribed": person.unsubscribed,
        "devices": [
            {"id": device.token, "platform": device.platform,
             "last_used": int(device.last_used.timestamp()) if device.last_used else None}
            for device in person.devices.all()
        ],
    }


Customer = inline_serializer("Customer", fields={
    "id": serializers.CharField(allow_null=True),
    "attributes": serializers.DictField(child=serializers.CharField(),
                                        help_text="Every value as a string."),
    "timestamps": serializers.DictField(child=serializers.IntegerField()),
    "unsubscribed": serializers.BooleanField(),
    "devices": serializers.ListField(child=serializers.DictField()),
})


class CustomerAttributesView(AppView):
    @extend_schema(summary="A person's attributes", parameters=[ID_TYPE],
                   responses={200: inline_serializer("CustomerAttributes",
                                                     fields={"customer": Customer}),
                              404: SingleError, **APP_RESPONSES})
    def get(self, request, customer_id):
        ref = app_ref(self.workspace, id_type_param(request, self.workspace), customer_id)
        person = (
            Person.objects.with_identifier(self.workspace, ref.kind, ref.value)
            .prefetch_related("devices")
            .first()
        )
        if person is None:
            raise NotFound("no person has this identifier")
        return Response({"customer": customer_payload(person)})


class CustomersAttributesView(AppView):
    """Attributes of up to 100 people at once; unknown ids are left out."""

    @extend_schema(
        summary="Attributes of up to 100 people", parameters=[ID_TYPE],
        request=inline_serializer("CustomerIds", fields={
            "ids": serializers.ListField(child=serializers.CharField(), min_length=1,
                                         max_length=100)}),
        responses={200: inline_serializer("CustomersAttributes", fields={
            "customers": serializers.ListField(
                child=inline_serializer("CustomerWrapper", fields={"customer": Customer}))}),
            **APP_RESPONSES},
    )
    def post(self, request):
        id_type = id_type_param(request, self.workspace)
        ids = request.data.get("ids") if isinstance(request.data, dict) else None
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise services.InvalidInput.single(
                "ids", "invalid", "ids must be a list of 1 to 100 identifiers")
        refs = [app_ref(self.workspace, id_type, str(value)) for value in ids]
        column = {"id": "customer_id", "email": "email_key", "cio_id": "cio_id"}[id_type]
        if id_type == "email":
            values = [email_key(ref.value) for ref in refs]
        else:
            values = [ref.value for ref in refs]
        people = (
            Person.objects.in_workspace(self.workspace)
            .filter(**{f"{column}__in": values})
            .prefetch_related("devices")
        )
        return Response({"customers": [{"customer": customer_payload(p)} for p in people]})
