"""Create the demo workspace, its people and events, and an admin login (printed once)."""

import random
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from engage.models import Membership, Workspace
from engage.services import create_workspace
from people import services

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
            self.stdout.write(self.style.SUCCESS(
                f"Demo workspace: site ID {credentials.site_id}\n"
                f"  Track API key {credentials.track_api_key}\n"
                f"  App API key   {credentials.app_api_key}\n"
                "  (keys are shown once; regenerate them in the admin)"
            ))
        else:
            Membership.objects.get_or_create(
                user=user, workspace=workspace, defaults={"role": Membership.Role.ADMIN}
            )

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
                    services.track_event(workspace, ref, name="login", timestamp=int(when.timestamp()))
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
