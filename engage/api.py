"""What every engage API shares: workspace authentication and Customer.io's error shapes."""

import base64
import binascii

from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from engage.keys import hash_key
from engage.models import Workspace
from people.errors import InvalidInput

UNAUTHORIZED = "Unauthorized request. Make sure that you provided the right credentials."


class WorkspaceClient:
    """The caller of an API: a workspace, through one of its keys."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, workspace: Workspace, key_kind: str):
        self.workspace = workspace
        self.key_kind = key_kind
        self.pk = f"{key_kind}:{workspace.pk}"

    def __str__(self):
        return self.pk


class TrackAuthentication(BaseAuthentication):
    """HTTP Basic with ``site_id:track_api_key``."""

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != b"basic":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(UNAUTHORIZED)
        try:
            site_id, _, key = base64.b64decode(header[1], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise exceptions.AuthenticationFailed(UNAUTHORIZED) from None
        workspace = Workspace.objects.filter(site_id=site_id).first()
        if workspace is None or not workspace.check_track_key(key):
            raise exceptions.AuthenticationFailed(UNAUTHORIZED)
        return WorkspaceClient(workspace, "track"), workspace

    def authenticate_header(self, request):
        return 'Basic realm="engage Track API"'


class AppAuthentication(BaseAuthentication):
    """``Authorization: Bearer <app_api_key>``."""

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(UNAUTHORIZED)
        try:
            key = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(UNAUTHORIZED) from None
        workspace = Workspace.objects.filter(app_key_hash=hash_key(key)).first()
        if workspace is None:
            raise exceptions.AuthenticationFailed(UNAUTHORIZED)
        return WorkspaceClient(workspace, "app"), workspace

    def authenticate_header(self, request):
        return 'Bearer realm="engage App API"'


class HasWorkspace(BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.auth, Workspace)


def error_messages(exc) -> list[str]:
    """Flatten what went wrong into plain messages."""
    if isinstance(exc, InvalidInput):
        return [problem.message for problem in exc.problems]
    detail = getattr(exc, "detail", str(exc))
    messages = []

    def walk(value, prefix=""):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{prefix}{key}: " if key != "non_field_errors" else prefix)
        elif isinstance(value, list):
            for item in value:
                walk(item, prefix)
        else:
            messages.append(f"{prefix}{value}")

    walk(detail)
    return messages


def track_v1_exception_handler(exc, context):
    """Answer errors as Track v1 does: ``{"meta": {"errors": [...]}}``."""
    if isinstance(exc, InvalidInput):
        return Response({"meta": {"errors": error_messages(exc)}}, status=400)
    if isinstance(exc, RequestDataTooBig):
        return Response({"meta": {"errors": ["request body is too large"]}}, status=413)
    response = exception_handler(exc, context)
    if response is None:
        return None
    response.data = {"meta": {"errors": error_messages(exc)}}
    return response


class TrackV1View(APIView):
    """Base for Track API v1 endpoints: Basic auth, JSON in and out, v1 error shapes."""

    authentication_classes = [TrackAuthentication]
    permission_classes = [HasWorkspace]
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    throttle_scope = "track"

    @property
    def workspace(self) -> Workspace:
        return self.request.auth

    def get_exception_handler(self):
        return track_v1_exception_handler

    def get_throttles(self):
        from engage.throttling import ScopedWorkspaceThrottle

        return [ScopedWorkspaceThrottle()]

    def body(self) -> dict:
        """Return the JSON body, which must be an object (an empty body is ``{}``)."""
        data = self.request.data
        if not data:
            return {}
        if not isinstance(data, dict):
            raise exceptions.ParseError("the request body must be a JSON object")
        return data


def v2_problems(exc) -> list[dict]:
    if isinstance(exc, InvalidInput):
        return [{"reason": p.reason, "field": p.field, "message": p.message}
                for p in exc.problems]
    reason = getattr(exc, "default_code", "invalid")
    return [{"reason": reason, "field": "", "message": message}
            for message in error_messages(exc)]


def track_v2_exception_handler(exc, context):
    """Answer errors as Track v2 does: ``{"errors": [{"reason", "field", "message"}]}``."""
    if isinstance(exc, InvalidInput):
        return Response({"errors": v2_problems(exc)}, status=400)
    if isinstance(exc, RequestDataTooBig):
        return Response({"errors": [{"reason": "too_large", "field": "",
                                     "message": "request body is too large"}]}, status=413)
    response = exception_handler(exc, context)
    if response is None:
        return None
    response.data = {"errors": v2_problems(exc)}
    return response


class TrackV2View(TrackV1View):
    def get_exception_handler(self):
        return track_v2_exception_handler


def app_exception_handler(exc, context):
    """Answer errors as the App API does: ``{"meta": {"error": "..."}}``."""
    if isinstance(exc, InvalidInput):
        return Response({"meta": {"error": "; ".join(error_messages(exc))}}, status=400)
    response = exception_handler(exc, context)
    if response is None:
        return None
    response.data = {"meta": {"error": "; ".join(error_messages(exc))}}
    return response


class AppView(APIView):
    """Base for App API endpoints: Bearer auth, JSON, throttled per key."""

    authentication_classes = [AppAuthentication]
    permission_classes = [HasWorkspace]
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    throttle_scope = "app"

    @property
    def workspace(self) -> Workspace:
        return self.request.auth

    def get_exception_handler(self):
        return app_exception_handler

    def get_throttles(self):
        from engage.throttling import ScopedWorkspaceThrottle

        return [ScopedWorkspaceThrottle()]


def ok() -> Response:
    return Response({}, status=status.HTTP_200_OK)
