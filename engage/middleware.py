"""Request checks that hold for every page."""

from django.core.exceptions import BadRequest

from people.validation import has_unstorable

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
