"""Request checks that hold for every page."""

import io

from django.conf import settings
from django.core.exceptions import BadRequest
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpResponse

from engage.json_checks import has_unstorable

API_PREFIXES = ("/api/v1/", "/api/v2/", "/v1/")


class RefuseUnstorableURLs:
    """Answer 400 to a page URL holding a NUL or a lone surrogate.

    No page can look such text up (PostgreSQL refuses NUL in a query), so it would
    otherwise fail as a server error. The APIs check their own input and name the field.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(API_PREFIXES) and (
                has_unstorable(request.path)
                or any(has_unstorable(value) for value in request.GET.values())):
            raise BadRequest("the address holds characters no page can look up")
        return self.get_response(request)


class ChunkedBodies:
    """Read a body sent with ``Transfer-Encoding: chunked``, or refuse it with 411.

    Django reads CONTENT_LENGTH bytes, so a chunked body (which has no length) would
    silently read as empty. gunicorn decodes the chunks and says the input ends where
    the body does (``wsgi.input_terminated``): the body is read to its end, within
    DATA_UPLOAD_MAX_MEMORY_SIZE. Servers that hand on the raw chunks (runserver) get a
    411 asking for a Content-Length.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        meta = request.META
        if ("chunked" not in meta.get("HTTP_TRANSFER_ENCODING", "").lower()
                or meta.get("CONTENT_LENGTH")):
            return self.get_response(request)
        if not meta.get("wsgi.input_terminated"):
            return _refuse(request, 411, "send the body with a Content-Length header: this "
                                         "server cannot read chunked bodies", "length_required")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = meta["wsgi.input"].read(-1 if limit is None else limit + 1)
        if limit is not None and len(body) > limit:
            return _refuse(request, 413, "request body is too large", "too_large")
        meta["CONTENT_LENGTH"] = str(len(body))
        request._stream = LimitedStream(io.BytesIO(body), len(body))
        return self.get_response(request)


def _refuse(request, status: int, message: str, code: str) -> HttpResponse:
    from engage.api import api_error

    return api_error(request, status, message, code) or HttpResponse(
        message, status=status, content_type="text/plain; charset=utf-8")
