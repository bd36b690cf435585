from django.apps import AppConfig
from django.db.models.signals import post_migrate


class EngageConfig(AppConfig):
    name = "engage"
    verbose_name = "Workspaces"

    def ready(self):
        from engage import schema  # noqa: F401  (registers the OpenAPI extensions)
        from engage.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
