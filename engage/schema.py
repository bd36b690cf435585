"""How the OpenAPI schema describes engage's authentication and error bodies."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers


class TrackAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "engage.api.TrackAuthentication"
    name = "TrackBasicAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "basic",
                "description": "site_id as the user name, the Track API key as the password"}


class AppAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "engage.api.AppAuthentication"
    name = "AppBearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "the App API key"}


Empty = inline_serializer("Empty", fields={})
TrackErrors = inline_serializer("TrackErrors", fields={
    "meta": inline_serializer("TrackErrorsMeta", fields={
        "errors": serializers.ListField(child=serializers.CharField()),
    }),
})
SingleError = inline_serializer("SingleError", fields={
    "meta": inline_serializer("SingleErrorMeta", fields={"error": serializers.CharField()}),
})

TRACK_RESPONSES = {200: Empty, 400: TrackErrors, 401: TrackErrors, 413: TrackErrors,
                   415: TrackErrors, 429: TrackErrors}
APP_RESPONSES = {400: SingleError, 401: SingleError, 413: SingleError, 415: SingleError,
                 429: SingleError}
# What the lookups of one thing by id add: it may not exist (or not in this workspace).
TRACK_NOT_FOUND = {**TRACK_RESPONSES, 404: TrackErrors}
APP_NOT_FOUND = {**APP_RESPONSES, 404: SingleError}
