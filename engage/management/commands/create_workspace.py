"""Create a workspace and print its site ID and API keys, once."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from engage.models import Workspace
from engage.services import create_workspace


class Command(BaseCommand):
    help = ("Create a workspace and print its site ID and API keys. The keys are shown "
            "only now: engage stores their hashes.")

    def add_arguments(self, parser):
        parser.add_argument("name", help="the workspace's name")
        parser.add_argument(
            "--identifier-mode", choices=Workspace.IdentifierMode.values,
            default=Workspace.IdentifierMode.EMAIL_OR_ID,
            help="how people are identified: by id only, or by email or id (the default)")
        parser.add_argument("--timezone", default="UTC", help="an IANA time zone name")
        parser.add_argument("--owner", help="username of a user who becomes its admin")

    def handle(self, *args, name, identifier_mode, timezone, owner, **options):
        name = name.strip()
        if not name:
            raise CommandError("A workspace needs a name.")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CommandError(
                f"{timezone!r} is not a time zone name (e.g. Europe/Berlin).") from None
        user = None
        if owner:
            user = get_user_model().objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"No user is called {owner!r}.")
        workspace, credentials = create_workspace(
            name=name, identifier_mode=identifier_mode, timezone=timezone, owner=user)
        self.stdout.write(
            f"Workspace {workspace.name!r} created.\n"
            f"  Site ID        {credentials.site_id}\n"
            f"  Track API key  {credentials.track_api_key}\n"
            f"  App API key    {credentials.app_api_key}\n"
            "Keep the keys now: they are not shown again (regenerate them under Settings).")
