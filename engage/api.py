"""What every engage API shares: workspace authentication and Customer.io's error shapes."""

import base64
import binascii
import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse, QueryDict
from django.views import defaults
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler, set_rollback

from engage import json_checks
from engage.errors import InvalidInput, Problem
from engage.keys import hash_key
from engage.models import Workspace
from engage.sql import select_models

UNAUTHORIZED = "Unauthorized request. Make sure that you provided the right credentials."
INTERNAL_ERROR = "internal server error"

logger = logging.getLogger("django.request")


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


def _workspace(column: str, value: str) -> Workspace | None:
    """Return the workspace whose unique ``column`` is ``value`` (one fixed statement)."""
    found = select_models(Workspace, f"{column} = %s", [value], limit=1)
    return found[0] if found else None


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
        workspace = _workspace("site_id", site_id)
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
        workspace = _workspace("app_key_hash", hash_key(key))
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


def v2_problems(exc) -> list[dict]:
    if isinstance(exc, InvalidInput):
        return [{"reason": p.reason, "field": p.field, "message": p.message}
                for p in exc.problems]
    codes = exc.get_codes() if hasattr(exc, "get_codes") else None
    reason = codes if isinstance(codes, str) else getattr(exc, "default_code", "invalid")
    return [{"reason": reason, "field": "", "message": message}
            for message in error_messages(exc)]


def _exception_handler(shape):
    """Return a DRF exception handler that answers every error with ``shape(exc)``."""

    def handle(exc, context):
        if isinstance(exc, InvalidInput):
            return Response(shape(exc), status=400)
        if isinstance(exc, RequestDataTooBig):
            exc = exceptions.APIException("request body is too large", "too_large")
            return Response(shape(exc), status=413)
        response = exception_handler(exc, context)
        if response is not None:
            response.data = shape(exc)
            return response
        # A bug or a failing dependency: logged as Django logs it, answered as JSON (the
        # clients cannot read an HTML page), and nothing of the request is committed.
        request = context.get("request")
        logger.error("Internal Server Error: %s", getattr(request, "path", ""),
                     exc_info=(type(exc), exc, exc.__traceback__))
        set_rollback()
        return Response(shape(exceptions.APIException(INTERNAL_ERROR, "internal")), status=500)

    return handle


# Track v1: {"meta": {"errors": [...]}}; Track v2: {"errors": [{reason, field, message}]};
# App API: {"meta": {"error": "..."}}.
track_v1_exception_handler = _exception_handler(
    lambda exc: {"meta": {"errors": error_messages(exc)}})
track_v2_exception_handler = _exception_handler(lambda exc: {"errors": v2_problems(exc)})
app_exception_handler = _exception_handler(
    lambda exc: {"meta": {"error": "; ".join(error_messages(exc))}})


def _error_shape(path: str):
    """Return the error shape of the API that ``path`` belongs to, or None for a page."""
    if path.startswith("/api/v1/merge_customers"):
        return lambda exc: {"meta": {"error": "; ".join(error_messages(exc))}}
    if path.startswith("/api/v1/"):
        return lambda exc: {"meta": {"errors": error_messages(exc)}}
    if path.startswith("/api/v2/"):
        return lambda exc: {"errors": v2_problems(exc)}
    if path.startswith("/v1/"):
        return lambda exc: {"meta": {"error": "; ".join(error_messages(exc))}}
    return None


def api_error(request, status: int, message: str, code: str) -> JsonResponse | None:
    """Return an error in the shape of the API ``request`` calls, or None for a page."""
    shape = _error_shape(request.path)
    if shape is None:
        return None
    return JsonResponse(shape(exceptions.APIException(message, code)), status=status)


# Django's error views, answering in the API's own shape for API paths: a failure outside
# a DRF view (a middleware, an unknown path, a broken request) still answers JSON.
def bad_request(request, exception):
    return (api_error(request, 400, "bad request", "invalid")
            or defaults.bad_request(request, exception))


def page_not_found(request, exception):
    return (api_error(request, 404, f"there is no endpoint {request.path}", "not_found")
            or defaults.page_not_found(request, exception))


def server_error(request):
    return (api_error(request, 500, INTERNAL_ERROR, "internal")
            or defaults.server_error(request))


class EngageJSONParser(JSONParser):
    """JSON as engage keeps it: no NaN or Infinity, nested at most MAX_JSON_DEPTH deep.

    Deeper text is refused naming where it nests, before Python's parser runs out of
    stack on it.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError as error:
            raise exceptions.ParseError(f"JSON parse error - {error}") from None
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            problem = json_checks.nesting_problem(text)
            raise InvalidInput([problem] if problem else [Problem(
                "body", "too_deep", "the body is nested too deeply")]) from None
        except ValueError as error:
            raise exceptions.ParseError(f"JSON parse error - {error}") from None
        if problem := json_checks.depth_problem(data):
            raise InvalidInput([problem])
        return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


class AlwaysJSON(DefaultContentNegotiation):
    """Answer in JSON whatever the Accept header asks for, as Customer.io does.

    Request bodies are still checked (JSON only, else 415); answers have one form, so
    there is nothing to negotiate, nor an Accept header to parse on every call.
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class WorkspaceAPIView(APIView):
    """Base for the APIs a workspace key opens: JSON in and out, throttled per key."""

    permission_classes = [HasWorkspace]
    parser_classes = [EngageJSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AlwaysJSON
    exception_handler = None
    throttle_scope = ""

    @property
    def workspace(self) -> Workspace:
        return self.request.auth

    def get_exception_handler(self):
        return type(self).exception_handler

    def get_throttles(self):
        from engage.throttling import ScopedWorkspaceThrottle

        return [ScopedWorkspaceThrottle()]

    def body(self) -> dict:
        """Return the JSON body, which must be an object (an empty body is ``{}``)."""
        data = self.request.data
        if isinstance(data, QueryDict):  # what DRF makes of an empty body
            return {}
        if not isinstance(data, dict):
            raise exceptions.ParseError("the request body must be a JSON object")
        return data


class TrackV1View(WorkspaceAPIView):
    """Track API v1: Basic auth with site_id and Track key, v1 error shapes."""

    authentication_classes = [TrackAuthentication]
    exception_handler = track_v1_exception_handler
    throttle_scope = "track"


class TrackV2View(TrackV1View):
    exception_handler = track_v2_exception_handler


class AppView(WorkspaceAPIView):
    """App API: Bearer auth with the App key, its error shape."""

    authentication_classes = [AppAuthentication]
    exception_handler = app_exception_handler
    throttle_scope = "app"


def ok() -> Response:
    return Response({}, status=status.HTTP_200_OK)


# --- keyset pages: ``start`` is the ``next`` of the previous page, opaque to clients -------

PAGING = [OpenApiParameter("start", str, description="The `next` of the previous page."),
          OpenApiParameter("limit", int)]


def page_cursor(request, *, default_limit: int, max_limit: int) -> tuple[int, int]:
    """Return (the key to start after, the page size) a paged App API request asks for."""
    start = request.query_params.get("start") or ""
    try:
        after = int(base64.urlsafe_b64decode(start.encode()).decode()) if start else 0
        limit = int(request.query_params.get("limit") or default_limit)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput.single("start", "invalid", "start must be the next of a previous "
                                                      "page, and limit a number") from None
    if not 1 <= limit <= max_limit:
        raise InvalidInput.single("limit", "invalid", f"limit must be 1 to {max_limit}")
    return after, limit


def next_page(key: int) -> str:
    """Return the ``next`` of a page whose last row has ``key``."""
    return base64.urlsafe_b64encode(str(key).encode()).decode()
