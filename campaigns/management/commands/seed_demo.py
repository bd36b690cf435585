"""Create the demo workspace, its people, events and segments, and an admin login.

The admin password is printed once, when it is created. The demo workspace's API keys
are kept in clear in ``var/demo-credentials.json`` (readable by its owner only; the
database keeps only their hashes) and printed on every start while they are current, so
a laptop demo can always be reached over the APIs.
"""

import json
import os
import random
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from engage.keys import key_matches
from engage.models import Membership, Workspace
from engage.services import WorkspaceCredentials, create_workspace
from people import services
from segments.services import add_to_segment, create_segment

FIRST = ["Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Radia",
         "Tim", "Frances", "Edsger", "Sophie", "Guido", "Katherine", "John", "Hedy", "Niklaus"]
LAST = ["Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov",
        "Ritchie", "Perlman", "Berners-Lee", "Allen", "Dijkstra", "Wilson", "van Rossum",
        "Johnson", "McCarthy", "Lamarr", "Wirth"]
DOMAINS = ["example.com", "example.org", "example.net"]
PLANS = ["free", "starter", "pro", "enterprise"]
COUNTRIES = ["DE", "FR", "GB", "US", "NL", "SE", "ES", "IT", "PL", "CA"]
PAGES = ["/", "/pricing", "/docs", "/blog/launch", "/account", "/checkout"]


class Command(BaseCommand):
    help = "Create the demo workspace with people and events, and an admin login."

    def add_arguments(self, parser):
        parser.add_argument("--people", type=int, default=150)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, people, seed, **options):
        user = self._admin_user()
        workspace = Workspace.objects.filter(name="Demo").first()
        if workspace is None:
            workspace, credentials = create_workspace(name="Demo", owner=user)
            self._populate(workspace, people, random.Random(seed))
            self._add_segments(workspace)
            self._remember(credentials)
        else:
            Membership.objects.get_or_create(
                user=user, workspace=workspace, defaults={"role": Membership.Role.ADMIN}
            )
        self._show_keys(workspace)

    def _credentials_file(self):
        return settings.VAR_DIR / "demo-credentials.json"

    def _remember(self, credentials: WorkspaceCredentials) -> None:
        path = self._credentials_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump({"site_id": credentials.site_id, "track_api_key": credentials.track_api_key,
                       "app_api_key": credentials.app_api_key}, file)

    def _show_keys(self, workspace: Workspace) -> None:
        path = self._credentials_file()
        try:
            kept = json.loads(path.read_text())
        except (OSError, ValueError):
            kept = {}
        current = (kept.get("site_id") == workspace.site_id
                   and key_matches(kept.get("track_api_key", ""), workspace.track_key_hash)
                   and key_matches(kept.get("app_api_key", ""), workspace.app_key_hash))
        if not current:
            self.stdout.write("Demo workspace: its API keys were regenerated; Settings > API "
                              "credentials shows new ones once.")
            return
        self.stdout.write(self.style.SUCCESS(
            f"Demo workspace: site ID {kept['site_id']}\n"
            f"  Track API key {kept['track_api_key']}\n"
            f"  App API key   {kept['app_api_key']}\n"
            f"  (kept for this demo in {path}; regenerate them under Settings)"
        ))

    def _add_segments(self, workspace: Workspace) -> None:
        create_segment(workspace, name="Paying customers",
                       description="People on a paid plan (data-driven).",
                       conditions_tree={"attribute": {"field": "plan", "operator": "in",
                                                      "value": ["starter", "pro", "enterprise"]}})
        vip = create_segment(workspace, name="VIP", description="Hand-picked people (manual).")
        add_to_segment(vip, workspace.people.order_by("pk").values_list("pk", flat=True)[:5])

    def _admin_user(self):
        User = get_user_model()
        user = User.objects.filter(username="admin").first()
        if user is not None:
            self.stdout.write("Admin login: admin (password printed when it was created; "
                              "change it with: .venv/bin/python manage.py changepassword admin)")
            return user
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser("admin", "admin@example.com", password)
        self.stdout.write(self.style.SUCCESS(
            f"Admin login created - username: admin  password: {password}  "
            "(shown only this once)"
        ))
        return user

    @transaction.atomic
    def _populate(self, workspace, count, rng):
        now = timezone.now()
        for number in range(1, count + 1):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            signed_up = now - timedelta(days=rng.randint(0, 400), seconds=rng.randint(0, 86400))
            ref = services.Ref("id", f"user-{number:04d}")
            services.identify_person(workspace, ref, {
                "email": f"{first}.{last}.{number}@{rng.choice(DOMAINS)}".lower().replace(" ", ""),
                "first_name": first,
                "last_name": last,
                "plan": rng.choice(PLANS),
                "country": rng.choice(COUNTRIES),
                "created_at": int(signed_up.timestamp()),
                "unsubscribed": rng.random() < 0.08,
                "company": {"name": f"{last} & Co", "size": rng.choice([1, 5, 20, 120, 900])},
            })
            for _ in range(rng.randint(1, 12)):
                when = signed_up + (now - signed_up) * rng.random()
                kind = rng.random()
                if kind < 0.5:
                    services.track_event(workspace, ref, name="login",
                                         timestamp=int(when.timestamp()))
                elif kind < 0.8:
                    services.track_event(workspace, ref, name=rng.choice(PAGES), type="page",
                                         timestamp=int(when.timestamp()))
                else:
                    services.track_event(
                        workspace, ref, name="purchase", timestamp=int(when.timestamp()),
                        data={"amount": round(rng.uniform(5, 500), 2), "currency": "EUR",
                              "items": [{"sku": f"SKU-{rng.randint(1, 40)}",
                                         "price": rng.randint(5, 200)}]},
                    )
        self.stdout.write(f"Demo workspace filled with {count} people and their events.")
