"""Track API v1: Customer.io's endpoints for people, events and devices."""

from rest_framework import exceptions
from rest_framework.response import Response

from engage.api import TrackV1View, ok
from people import services
from people.models import Suppression

DEVICE_KEYS = {"id", "platform", "last_used", "attributes", "_last_status"}


class CustomerView(TrackV1View):
    """``PUT`` identifies (creates or updates) a person; ``DELETE`` deletes them."""

    def put(self, request, identifier):
        ref = services.parse_identifier(self.workspace, identifier)
        services.identify_person(self.workspace, ref, self.body())
        return ok()

    def delete(self, request, identifier):
        ref = services.parse_identifier(self.workspace, identifier)
        services.delete_person(self.workspace, ref, source=Suppression.Source.API)
        return ok()


def _event_fields(body: dict) -> dict:
    return {
        "name": body.get("name"),
        "data": body.get("data"),
        "timestamp": body.get("timestamp"),
        "dedup_id": body.get("id"),
        "type": body.get("type") or "event",
    }


class CustomerEventView(TrackV1View):
    def post(self, request, identifier):
        ref = services.parse_identifier(self.workspace, identifier)
        services.track_event(self.workspace, ref, **_event_fields(self.body()))
        return ok()


class AnonymousEventView(TrackV1View):
    def post(self, request):
        body = self.body()
        services.track_anonymous_event(
            self.workspace, anonymous_id=body.get("anonymous_id"), **_event_fields(body)
        )
        return ok()


class DeviceView(TrackV1View):
    def put(self, request, identifier):
        device = self.body().get("device")
        if not isinstance(device, dict):
            raise exceptions.ParseError("device is required and must be an object")
        attributes = device.get("attributes") or {}
        if isinstance(attributes, dict):
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
    def delete(self, request, identifier, token):
        ref = services.parse_identifier(self.workspace, identifier)
        services.delete_device(self.workspace, ref, token=token)
        return ok()


class SuppressView(TrackV1View):
    def post(self, request, identifier):
        ref = services.parse_identifier(self.workspace, identifier)
        services.suppress_identifier(self.workspace, ref, source=Suppression.Source.API)
        return ok()


class UnsuppressView(TrackV1View):
    def post(self, request, identifier):
        services.unsuppress_identifier(
            self.workspace, services.parse_identifier(self.workspace, identifier)
        )
        return ok()


class MergeView(TrackV1View):
    """Merge the secondary person into the primary; errors as ``{"meta":{"error":...}}``."""

    def post(self, request):
        body = self.body()
        try:
            primary = self._side(body, "primary")
            secondary = self._side(body, "secondary")
        except services.InvalidInput as error:
            return Response({"meta": {"error": str(error)}}, status=400)
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
    def get(self, request):
        return Response({
            "url": request.build_absolute_uri("/").rstrip("/"),
            "region": "us",
            "environment_id": self.workspace.pk,
        })
