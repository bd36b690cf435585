"""Which workspace a signed-in person is working in, and what their role lets them do."""

from functools import wraps

from django.core.exceptions import PermissionDenied

from engage.models import Membership

ROLE_RANK = {Membership.Role.VIEWER: 0, Membership.Role.EDITOR: 1, Membership.Role.ADMIN: 2}
SESSION_KEY = "engage_workspace_id"


def memberships_of(user):
    return Membership.objects.filter(user=user).select_related("workspace").order_by(
        "workspace__name", "workspace__pk")


class CurrentWorkspaceMiddleware:
    """Put the signed-in user's current membership on ``request.membership``."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.membership = None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            chosen = request.session.get(SESSION_KEY)
            memberships = memberships_of(user)
            membership = memberships.filter(workspace_id=chosen).first() if chosen else None
            request.membership = membership or memberships.first()
        return self.get_response(request)


def switch_workspace(request, workspace_id: int) -> bool:
    """Make ``workspace_id`` current if the user belongs to it; tell whether it did."""
    if not memberships_of(request.user).filter(workspace_id=workspace_id).exists():
        return False
    request.session[SESSION_KEY] = workspace_id
    return True


def role_required(role: str):
    """Let the view run only for members with at least ``role`` (else 403)."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                from django.contrib.auth.views import redirect_to_login

                return redirect_to_login(request.get_full_path())
            membership = request.membership
            if membership is None or ROLE_RANK[membership.role] < ROLE_RANK[role]:
                raise PermissionDenied(f"this needs the {role} role")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def workspace_context(request):
    """Template context: the current membership, the user's workspaces, what they may do."""
    membership = getattr(request, "membership", None)
    if membership is None:
        return {}
    return {
        "membership": membership,
        "workspace": membership.workspace,
        "can_edit": membership.can_edit,
        "is_admin": membership.is_admin,
        "all_memberships": memberships_of(request.user),
    }
