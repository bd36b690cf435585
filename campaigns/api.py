"""Campaigns over the App API: Customer.io's reads, and engage's campaigns as code.

Customer.io's shapes where it has them (``GET /v1/campaigns``, ``/{id}``, ``/actions``,
``/metrics``); engage's own for the rest: ``POST /v1/campaigns`` and ``PUT /{id}`` take a
definition (``campaigns.definition``), ``GET /{id}/definition`` returns it, and start,
stop, archive, unarchive and delete call the lifecycle services.

Errors keep the App API's ``{"meta": {"error": "..."}}``. A definition's problems add
``"errors": [{"field": <place>, "reason", "message"}]`` beside it (the Track API v2's
problem shape, with the definition's place as the field), so a client that reads only
``meta.error`` still gets every place in the message. A stale edit answers 409 with the
saved ``version``; a lifecycle step the campaign's state refuses answers 409.
"""


from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from campaigns import metrics, services
from campaigns.definition import DefinitionError, iter_steps
from campaigns.models import Campaign, Journey
from engage.api import PAGING, AppView, app_exception_handler, next_page, ok, page_cursor
from engage.schema import APP_RESPONSES, SingleError
from people.api_params import ID_TYPE, app_ref, id_type_param
from people.errors import InvalidInput
from people.models import Person

# --- shapes ----------------------------------------------------------------------------


def _unix(moment) -> int | None:
    return int(moment.timestamp()) if moment else None


def _steps(campaign: Campaign):
    return iter_steps(campaign.definition["workflow"]["steps"])


def _segment_ids(campaign: Campaign) -> tuple[list[int], list[int]]:
    """Return the segments that trigger the campaign, and those that filter who enters.

    A segment the trigger wants people *not* to be in filters, as Customer.io files it.
    """
    definition = campaign.definition
    trigger = definition["trigger"].get("segments") or {"segments": []}
    triggering = {item["id"] for item in trigger["segments"] if item["in"]}
    filtering = {item["id"] for item in trigger["segments"] if not item["in"]}
    filtering |= services.segment_ids({"filters": definition.get("filters")})
    return sorted(triggering), sorted(filtering)


def campaign_payload(campaign: Campaign) -> dict:
    triggering, filtering = _segment_ids(campaign)
    return {
        "id": campaign.pk,
        "deduplicate_id": f"{campaign.pk}:{_unix(campaign.updated_at)}",
        "name": campaign.name,
        "description": campaign.description,
        "state": campaign.state,
        # Messages still go out while a stopping campaign's journeys finish.
        "active": campaign.state in (Campaign.State.RUNNING, Campaign.State.STOPPING),
        "trigger": campaign.trigger,
        "created": _unix(campaign.created_at),
        "updated": _unix(campaign.updated_at),
        "first_started": _unix(campaign.first_started_at),
        "tags": campaign.tags,
        "actions": [{"type": step["type"], "id": step["id"]} for _, step in _steps(campaign)],
        "trigger_segment_ids": triggering,
        "filter_segment_ids": filtering,
        "version": campaign.version,
    }


def action_payloads(campaign: Campaign) -> list[dict]:
    """Return every step of the workflow, depth first, with the block step it sits in."""
    parents: dict[str, str | None] = {}
    for _, step in _steps(campaign):
        parents.setdefault(step["id"], None)
        for path in step.get("paths") or []:
            for child in path["steps"]:
                parents[child["id"]] = step["id"]
    return [{
        "id": step["id"],
        "campaign_id": campaign.pk,
        "parent_action_id": parents[step["id"]],
        "deduplicate_id": f"{step['id']}:{_unix(campaign.updated_at)}",
        "name": step.get("name") or "",
        "type": step["type"],
        "sending_state": step.get("sending"),
        "created": _unix(campaign.created_at),
        "updated": _unix(campaign.updated_at),
        "settings": {key: value for key, value in step.items()
                     if key not in ("id", "type", "name", "paths")},
    } for _, step in _steps(campaign)]


def journey_payload(journey: Journey) -> dict:
    return {
        "id": journey.pk,
        "campaign": {"id": journey.campaign_id, "name": journey.campaign.name},
        "state": journey.state,
        "exit_reason": journey.exit_reason,
        "step": journey.step_id or None,
        "entered": _unix(journey.entered_at),
        "ended": _unix(journey.ended_at),
        "converted": _unix(journey.converted_at),
    }


CampaignShape = inline_serializer("Campaign", fields={
    "id": serializers.IntegerField(),
    "deduplicate_id": serializers.CharField(),
    "name": serializers.CharField(),
    "description": serializers.CharField(),
    "state": serializers.ChoiceField(Campaign.State.values),
    "active": serializers.BooleanField(help_text="Running, or stopping while journeys finish."),
    "trigger": serializers.ChoiceField(Campaign.Trigger.values),
    "created": serializers.IntegerField(help_text="Unix seconds."),
    "updated": serializers.IntegerField(help_text="Unix seconds."),
    "first_started": serializers.IntegerField(allow_null=True, help_text="Unix seconds."),
    "tags": serializers.ListField(child=serializers.CharField()),
    "actions": serializers.ListField(child=inline_serializer("CampaignAction", fields={
        "type": serializers.CharField(), "id": serializers.CharField()})),
    "trigger_segment_ids": serializers.ListField(child=serializers.IntegerField()),
    "filter_segment_ids": serializers.ListField(child=serializers.IntegerField()),
    "version": serializers.IntegerField(help_text="Send it back as If-Match to edit safely."),
})
CampaignWrapper = inline_serializer("CampaignWrapper", fields={"campaign": CampaignShape})
DefinitionErrors = inline_serializer("DefinitionErrors", fields={
    "meta": inline_serializer("DefinitionErrorsMeta", fields={
        "error": serializers.CharField()}),
    # Only when the definition itself is at fault (a body that is no JSON object has none).
    "errors": serializers.ListField(required=False, child=inline_serializer(
        "DefinitionProblem", fields={
            "field": serializers.CharField(help_text="The place, as workflow.steps[2].url."),
            "reason": serializers.ChoiceField(["invalid", "unconfigured"]),
            "message": serializers.CharField()})),
})
StaleVersion = inline_serializer("StaleVersion", fields={
    "meta": inline_serializer("StaleVersionMeta", fields={"error": serializers.CharField()}),
    "version": serializers.IntegerField(help_text="The saved version."),
})
StepFigures = inline_serializer("StepMetrics", fields={
    name: serializers.IntegerField() for name in metrics.STEP_METRICS})
Metrics = inline_serializer("CampaignMetrics", fields={"metrics": inline_serializer(
    "CampaignMetricsBody", fields={
        **{name: serializers.IntegerField() for name in metrics.JOURNEY_METRICS},
        "steps": serializers.DictField(child=StepFigures, help_text="By step id.")})})
Journeys = inline_serializer("CustomerJourneys", fields={
    "journeys": serializers.ListField(child=inline_serializer("CustomerJourney", fields={
        "id": serializers.IntegerField(),
        "campaign": inline_serializer("JourneyCampaign", fields={
            "id": serializers.IntegerField(), "name": serializers.CharField()}),
        "state": serializers.ChoiceField(Journey.State.values),
        "exit_reason": serializers.CharField(),
        "step": serializers.CharField(allow_null=True),
        "entered": serializers.IntegerField(),
        "ended": serializers.IntegerField(allow_null=True),
        "converted": serializers.IntegerField(allow_null=True)})),
    "next": serializers.CharField(),
})

READ = {404: SingleError, **APP_RESPONSES}
WRITE = {400: DefinitionErrors, 404: SingleError, 409: SingleError, 401: SingleError,
         429: SingleError}
IF_MATCH = OpenApiParameter(
    "If-Match", str, OpenApiParameter.HEADER,
    description='The version the edit was made against, as `"3"` (the ETag of GET '
                "/definition); a `version` field in the body does the same. Without either "
                "the definition is saved whatever the version.")


# --- errors ----------------------------------------------------------------------------


def campaign_exception_handler(exc, context):
    """Answer definition problems by place, and refused lifecycle steps with 409."""
    if isinstance(exc, DefinitionError):
        return Response({
            "meta": {"error": str(exc)},
            "errors": [{"field": p.place, "reason": p.reason, "message": p.message}
                       for p in exc.problems],
        }, status=400)
    if isinstance(exc, services.StaleEdit):
        return Response({"meta": {"error": str(exc)}, "version": exc.campaign.version},
                        status=409)
    if isinstance(exc, services.CampaignStateError):
        return Response({"meta": {"error": str(exc)}}, status=409)
    return app_exception_handler(exc, context)


class CampaignView(AppView):
    exception_handler = campaign_exception_handler

    def campaign(self, campaign_id) -> Campaign:
        campaign = Campaign.objects.in_workspace(self.workspace).filter(pk=campaign_id).first()
        if campaign is None:
            raise NotFound(f"there is no campaign {campaign_id}")
        return campaign

    def answer(self, campaign: Campaign) -> Response:
        return Response({"campaign": campaign_payload(campaign)},
                        headers={"ETag": f'"{campaign.version}"'})

    def choice(self, name: str, choices, default: str) -> str:
        value = self.body().get(name, default)
        if value not in choices:
            raise InvalidInput.single(name, "invalid",
                                      f"{name} must be one of: {', '.join(choices)}")
        return value


# --- views -----------------------------------------------------------------------------


class CampaignListView(CampaignView):
    @extend_schema(summary="List campaigns", operation_id="v1_campaigns_list",
                   responses={200: inline_serializer("Campaigns", fields={
                       "campaigns": serializers.ListField(child=CampaignShape)}),
                       **APP_RESPONSES})
    def get(self, request):
        campaigns = Campaign.objects.in_workspace(self.workspace).order_by("pk")
        return Response({"campaigns": [campaign_payload(c) for c in campaigns]})

    @extend_schema(summary="Create a draft campaign from a definition",
                   operation_id="v1_campaigns_create", request=OpenApiTypes.OBJECT,
                   responses={200: CampaignWrapper, **WRITE},
                   description="The body is a campaign definition (see the design's "
                               "\"Campaign definition\"). Unconfigured steps are allowed in "
                               "a draft; problems answer 400 naming their place.")
    def post(self, request):
        return self.answer(services.create_campaign(self.workspace, self.body()))


def _version(request, body: dict) -> int | None:
    """Return the version an edit was made against: If-Match, or a ``version`` field."""
    header = request.headers.get("If-Match")
    value = body.pop("version", None)
    if header is not None and header.strip() != "*":  # "*": whatever version is saved
        value = header.strip().removeprefix("W/").strip('"')
        if not value.isdigit():
            raise InvalidInput.single("If-Match", "invalid",
                                      'If-Match must carry the version, as "3"')
        return int(value)
    if header is not None:
        return None
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise InvalidInput.single("version", "invalid", "version must be a whole number")
    return value


class CampaignDetailView(CampaignView):
    @extend_schema(summary="A campaign", operation_id="v1_campaigns_retrieve",
                   responses={200: CampaignWrapper, **READ})
    def get(self, request, campaign_id):
        return Response({"campaign": campaign_payload(self.campaign(campaign_id))})

    @extend_schema(summary="Replace a campaign's definition", parameters=[IF_MATCH],
                   request=OpenApiTypes.OBJECT, responses={200: CampaignWrapper, **WRITE,
                                                           409: StaleVersion},
                   description="A stale version answers 409 with the saved version; an "
                               "archived campaign, or a new trigger type for one that has "
                               "run, answers 409 too.")
    def put(self, request, campaign_id):
        campaign = self.campaign(campaign_id)
        body = dict(self.body())
        version = _version(request, body)
        return self.answer(services.update_campaign(campaign, body, version=version))

    @extend_schema(summary="Delete a campaign (its message figures stay, anonymous)",
                   request=None, responses={200: OpenApiTypes.OBJECT, **READ})
    def delete(self, request, campaign_id):
        services.delete_campaign(self.campaign(campaign_id))
        return ok()


class CampaignDefinitionView(CampaignView):
    @extend_schema(summary="A campaign's definition, to keep as code",
                   responses={200: OpenApiTypes.OBJECT, **READ},
                   description="The definition document as PUT takes it; the ETag header "
                               "holds its version.")
    def get(self, request, campaign_id):
        campaign = self.campaign(campaign_id)
        return Response(campaign.definition, headers={"ETag": f'"{campaign.version}"'})


class CampaignMetricsView(CampaignView):
    @extend_schema(summary="A campaign's journeys and each step's figures",
                   responses={200: Metrics, **READ})
    def get(self, request, campaign_id):
        return Response({"metrics": metrics.campaign_metrics(self.campaign(campaign_id))})


class CampaignActionsView(CampaignView):
    @extend_schema(summary="The steps of a campaign's workflow",
                   responses={200: OpenApiTypes.OBJECT, **READ})
    def get(self, request, campaign_id):
        return Response({"actions": action_payloads(self.campaign(campaign_id)), "next": ""})


LIFECYCLE = {200: CampaignWrapper, 400: SingleError, 404: SingleError, 409: SingleError,
             401: SingleError, 429: SingleError}


class StartView(CampaignView):
    @extend_schema(
        summary="Start (or restart) a campaign",
        request=inline_serializer("StartCampaign", fields={
            "audience": serializers.ChoiceField(services.Audience.CHOICES, required=False,
                                                default=services.Audience.CURRENT_AND_FUTURE)}),
        responses={**LIFECYCLE, 400: DefinitionErrors},
        description="`current_and_future` enters the people a segments trigger matches now; "
                    "`future_only` waits for new matches. Unconfigured steps answer 400 "
                    "naming their place; a campaign that is not a draft or stopped, 409.")
    def post(self, request, campaign_id):
        campaign = self.campaign(campaign_id)
        audience = self.choice("audience", services.Audience.CHOICES,
                               services.Audience.CURRENT_AND_FUTURE)
        return self.answer(services.start_campaign(campaign, audience=audience))


class StopView(CampaignView):
    @extend_schema(
        summary="Stop a running campaign",
        request=inline_serializer("StopCampaign", fields={
            "journeys": serializers.ChoiceField(["exit", "finish"], required=False,
                                                default="exit")}),
        responses=LIFECYCLE,
        description="`exit` ends every journey now; `finish` lets them run to the end "
                    "(the campaign is `stopping` until the last one ends).")
    def post(self, request, campaign_id):
        campaign = self.campaign(campaign_id)
        journeys = self.choice("journeys", ("exit", "finish"), "exit")
        return self.answer(services.stop_campaign(campaign, journeys=journeys))


class ArchiveView(CampaignView):
    @extend_schema(summary="Archive a campaign: everyone exits, unsent drafts go",
                   request=None, responses=LIFECYCLE)
    def post(self, request, campaign_id):
        return self.answer(services.archive_campaign(self.campaign(campaign_id)))


class UnarchiveView(CampaignView):
    @extend_schema(summary="Bring an archived campaign back, stopped", request=None,
                   responses=LIFECYCLE)
    def post(self, request, campaign_id):
        return self.answer(services.unarchive_campaign(self.campaign(campaign_id)))


class CustomerJourneysView(CampaignView):
    @extend_schema(summary="A person's journeys through campaigns, oldest first",
                   parameters=[ID_TYPE, *PAGING], responses={200: Journeys, **READ})
    def get(self, request, customer_id):
        ref = app_ref(self.workspace, id_type_param(request, self.workspace), customer_id)
        person = Person.objects.with_identifier(self.workspace, ref.kind, ref.value).first()
        if person is None:
            raise NotFound("no person has this identifier")
        after, limit = page_cursor(request, default_limit=100, max_limit=1000)
        rows = list(Journey.objects.in_workspace(self.workspace)
                    .filter(person=person, pk__gt=after).select_related("campaign")
                    .order_by("pk")[:limit + 1])
        more, rows = len(rows) > limit, rows[:limit]
        return Response({"journeys": [journey_payload(journey) for journey in rows],
                         "next": next_page(rows[-1].pk) if more else ""})
