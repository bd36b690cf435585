"""How the App API names a person (``id_type`` and an identifier): shared by every App API
that reads people."""

from drf_spectacular.utils import OpenApiParameter

from people.services import InvalidInput, Ref, make_ref


def id_type_param(request, workspace) -> str:
    """Return the request's ``id_type`` (default ``id``), or raise a 400 naming it."""
    id_type = request.query_params.get("id_type", "id")
    if id_type not in ("id", "email", "cio_id"):
        raise InvalidInput.single(
            "id_type", "invalid", f"unknown id_type '{id_type}': use id, email or cio_id")
    if id_type == "email" and not workspace.email_is_identifier:
        raise InvalidInput.single(
            "id_type", "invalid", "email is not an identifier in this workspace")
    return id_type


def app_ref(workspace, id_type: str, value: str) -> Ref:
    """Return a reference from an App API identifier (cio_ids may carry their prefix)."""
    if id_type == "cio_id":
        value = value.removeprefix("cio_")
    return make_ref(workspace, id_type, value, field="")


ID_TYPE = OpenApiParameter("id_type", str, enum=["id", "email", "cio_id"], default="id")
