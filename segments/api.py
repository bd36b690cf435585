"""Segments over the Track API (manual membership) and the App API (reads, create, search)."""


from django.db.models import F
from django.http import FileResponse, Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from engage.api import PAGING, AppView, TrackV1View, next_page, ok, page_cursor
from engage.schema import APP_NOT_FOUND, APP_RESPONSES, TRACK_NOT_FOUND
from people import validation
from people.api_params import ID_TYPE, app_ref, id_type_param
from people.errors import InvalidInput
from people.models import Person
from people.validation import email_key
from segments import exports, services
from segments.conditions import ConditionError, matching_people, validate
from segments.models import Export, Membership, Segment

MAX_IDS = 1000


def _segment(workspace, segment_id) -> Segment:
    segment = Segment.objects.in_workspace(workspace).filter(pk=segment_id).first()
    if segment is None:
        raise NotFound(f"there is no segment {segment_id}")
    return segment


def _check_storable(value, *, field: str) -> None:
    """Refuse text the database cannot hold (NUL, lone surrogates), naming where it is."""
    if problem := validation.value_problem(value, field=field):
        raise InvalidInput([problem])


def _people_by(workspace, id_type: str, values: list) -> list[int]:
    """Return the primary keys of the people the values name; other values are ignored."""
    strings = [str(value) for value in values if isinstance(value, str | int)
               and not isinstance(value, bool)]
    if id_type == "id":
        lookup = {"customer_id__in": strings}
    elif id_type == "email":
        lookup = {"email_key__in": [email_key(value) for value in strings]}
    else:
        lookup = {"cio_id__in": [value.removeprefix("cio_") for value in strings]}
    return list(Person.objects.filter(workspace=workspace, **lookup).values_list("pk", flat=True))


class ManualMembershipView(TrackV1View):
    """``POST /segments/{id}/add_customers`` and ``remove_customers``."""

    add = True

    @extend_schema(parameters=[ID_TYPE], request=OpenApiTypes.OBJECT,
                   responses=TRACK_NOT_FOUND,
                   summary="Add people to, or remove them from, a manual segment")
    def post(self, request, segment_id):
        segment = _segment(self.workspace, segment_id)
        id_type = id_type_param(request, self.workspace)
        ids = self.body().get("ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_IDS:
            raise InvalidInput.single("ids", "invalid", f"ids must be a list of 1 to {MAX_IDS} "
                                                        "identifiers")
        if not segment.is_manual:
            raise InvalidInput.single("segment", "invalid",
                                      "a data-driven segment's members follow its conditions; "
                                      "only manual segments take people directly")
        _check_storable(ids, field="ids")
        person_ids = _people_by(self.workspace, id_type, ids)
        change = services.add_to_segment if self.add else services.remove_from_segment
        change(segment, person_ids)
        return ok()


def segment_payload(segment: Segment) -> dict:
    return {
        "id": segment.pk,
        "deduplicate_id": f"{segment.pk}:{int(segment.updated_at.timestamp())}",
        "name": segment.name,
        "description": segment.description,
        "state": "finished" if segment.is_manual or segment.computed_at else "events",
        "progress": None,
        "type": "manual" if segment.is_manual else "dynamic",
        "tags": None,
        "conditions": segment.conditions,
        "archived": segment.archived,
        "created_at": int(segment.created_at.timestamp()),
        "updated_at": int(segment.updated_at.timestamp()),
    }


def _conditions_problem(error: ConditionError) -> InvalidInput:
    return InvalidInput.single("conditions", "invalid", str(error))


class SegmentListView(AppView):
    @extend_schema(summary="List segments", operation_id="v1_segments_list",
                   responses={200: OpenApiTypes.OBJECT, **APP_RESPONSES})
    def get(self, request):
        segments = Segment.objects.in_workspace(self.workspace).order_by("pk")
        return Response({"segments": [segment_payload(segment) for segment in segments]})

    @extend_schema(summary="Create a segment (manual, or data-driven with conditions)",
                   request=OpenApiTypes.OBJECT,
                   responses={200: OpenApiTypes.OBJECT, **APP_RESPONSES})
    def post(self, request):
        body = request.data.get("segment") if isinstance(request.data, dict) else None
        if not isinstance(body, dict):
            raise InvalidInput.single("segment", "required", "segment is required")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidInput.single("segment.name", "required",
                                      "segment.name must be 1 to 200 characters")
        _check_storable(body, field="segment")
        try:
            segment = services.create_segment(
                self.workspace, name=name.strip(), description=str(body.get("description") or ""),
                conditions_tree=body.get("conditions"))
        except ConditionError as error:
            raise _conditions_problem(error) from None
        return Response({"segment": segment_payload(segment)})


class SegmentDetailView(AppView):
    @extend_schema(summary="A segment", responses={200: OpenApiTypes.OBJECT, **APP_NOT_FOUND})
    def get(self, request, segment_id):
        return Response({"segment": segment_payload(_segment(self.workspace, segment_id))})


def _page(people, limit: int) -> dict:
    rows = list(people.values("pk", "customer_id", "email", "cio_id")[:limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = next_page(rows[-1]["pk"]) if more and rows else ""
    return {
        "identifiers": [{"id": row["customer_id"] or "", "email": row["email"],
                         "cio_id": row["cio_id"]} for row in rows],
        "ids": [row["customer_id"] or "" for row in rows],
        "next": next_cursor,
    }


class SegmentMembershipView(AppView):
    @extend_schema(summary="Members of a segment, a page at a time", parameters=PAGING,
                   responses={200: OpenApiTypes.OBJECT, **APP_NOT_FOUND})
    def get(self, request, segment_id):
        segment = _segment(self.workspace, segment_id)
        after, limit = page_cursor(request, default_limit=1000, max_limit=30000)
        member_ids = Membership.objects.filter(segment=segment).values("person_id")
        people = (Person.objects.filter(workspace=self.workspace, pk__in=member_ids,
                                        pk__gt=after).order_by("pk"))
        return Response(_page(people, limit))


class CustomerSegmentsView(AppView):
    @extend_schema(summary="Segments a person is in", parameters=[ID_TYPE],
                   responses={200: OpenApiTypes.OBJECT, **APP_NOT_FOUND})
    def get(self, request, customer_id):
        id_type = id_type_param(request, self.workspace)
        ref = app_ref(self.workspace, id_type, customer_id)
        person = Person.objects.with_identifier(self.workspace, ref.kind, ref.value).first()
        if person is None:
            raise NotFound("no person has this identifier")
        segments = Segment.objects.filter(memberships__person=person).order_by("pk")
        return Response({"segments": [segment_payload(segment) for segment in segments]})


class CustomersByEmailView(AppView):
    @extend_schema(
        summary="People with an email", parameters=[OpenApiParameter("email", str, required=True)],
        responses={200: inline_serializer("CustomersByEmail", fields={
            "results": serializers.ListField(child=inline_serializer("CustomerIdentifiers", fields={
                "email": serializers.CharField(allow_null=True),
                "id": serializers.CharField(allow_null=True),
                "cio_id": serializers.CharField()}))}),
            **APP_RESPONSES},
    )
    def get(self, request):
        email = request.query_params.get("email", "").strip()
        if not email:
            raise InvalidInput.single("email", "required", "email is required")
        if validation.has_unstorable(email):
            raise InvalidInput.single(
                "email", "invalid_value",
                "email cannot contain NUL characters or unpaired surrogates")
        people = Person.objects.with_identifier(self.workspace, "email", email)[:100]
        return Response({"results": [
            {"email": person.email, "id": person.customer_id, "cio_id": person.cio_id}
            for person in people
        ]})


class CustomersView(CustomersByEmailView):
    """``GET /v1/customers?email=`` finds people by email; ``POST`` searches with a filter."""

    @extend_schema(summary="Search people with a filter", parameters=PAGING,
                   request=OpenApiTypes.OBJECT,
                   responses={200: OpenApiTypes.OBJECT, **APP_RESPONSES})
    def post(self, request):
        tree = request.data.get("filter") if isinstance(request.data, dict) else None
        if tree is None:
            raise InvalidInput.single("filter", "required", "filter is required")
        _check_storable(tree, field="filter")
        try:
            validate(tree, workspace=self.workspace)
        except ConditionError as error:
            raise InvalidInput.single("filter", "invalid", str(error)) from None
        after, limit = page_cursor(request, default_limit=50, max_limit=1000)
        people_matching = matching_people(self.workspace, tree).filter(pk__gt=after).order_by("pk")
        return Response(_page(people_matching, limit))


# --- exports ---------------------------------------------------------------------------


def export_payload(export: Export) -> dict:
    return {
        "id": export.pk,
        "user_id": 0,
        "user_email": None,
        "total": export.total,
        "deduplicate_id": f"{export.pk}:{int(export.created_at.timestamp())}",
        "type": "customers",
        "failed": export.state == Export.State.FAILED,
        "status": export.state,
        "description": export.description,
        "downloads": export.downloads,
        "created_at": int(export.created_at.timestamp()),
        "updated_at": int(export.updated_at.timestamp()),
    }


def _export(workspace, export_id) -> Export:
    export = Export.objects.filter(workspace=workspace, pk=export_id).first()
    if export is None:
        raise NotFound(f"there is no export {export_id}")
    return export


class CustomerExportView(AppView):
    @extend_schema(summary="Export the people a filter matches, as CSV",
                   request=OpenApiTypes.OBJECT,
                   responses={200: OpenApiTypes.OBJECT, **APP_RESPONSES})
    def post(self, request):
        filters = request.data.get("filters") if isinstance(request.data, dict) else None
        if filters is None:
            raise InvalidInput.single("filters", "required", "filters is required")
        _check_storable(request.data, field="")
        try:
            export = exports.start_export(self.workspace, filters,
                                          description=str(request.data.get("description") or ""))
        except ConditionError as error:
            raise InvalidInput.single("filters", "invalid", str(error)) from None
        return Response({"export": export_payload(export)})


class ExportListView(AppView):
    @extend_schema(summary="List exports", operation_id="v1_exports_list",
                   responses={200: OpenApiTypes.OBJECT, **APP_RESPONSES})
    def get(self, request):
        rows = Export.objects.filter(workspace=self.workspace).order_by("-pk")[:100]
        return Response({"exports": [export_payload(export) for export in rows]})


class ExportDetailView(AppView):
    @extend_schema(summary="An export", responses={200: OpenApiTypes.OBJECT, **APP_NOT_FOUND})
    def get(self, request, export_id):
        return Response({"export": export_payload(_export(self.workspace, export_id))})


class ExportDownloadView(AppView):
    @extend_schema(summary="A link to download a finished export (valid 15 minutes)",
                   responses={200: OpenApiTypes.OBJECT, **APP_NOT_FOUND})
    def get(self, request, export_id):
        export = _export(self.workspace, export_id)
        if export.state != Export.State.DONE:
            raise NotFound(f"export {export_id} is not ready: it is {export.state}")
        path = reverse("export-file", args=[exports.download_token(export)])
        return Response({"url": request.build_absolute_uri(path)})


def export_file(request, token):
    """Stream a finished export's CSV to whoever holds a valid link."""
    export = exports.export_for_token(token)
    if export is None:
        raise Http404("this download link is unknown or has expired")
    path = exports.export_dir() / export.file_name
    if not path.exists():
        raise Http404("this export's file is gone")
    Export.objects.filter(pk=export.pk).update(downloads=F("downloads") + 1)
    return FileResponse(path.open("rb"), as_attachment=True,
                        filename=f"people-export-{export.pk}.csv", content_type="text/csv")
