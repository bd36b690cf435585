from django.db import models

from engage.models import BackgroundJob, JobItem


class Chore(BackgroundJob):
    """Count the people of a snapshot that have an email: a new kind, declared and no more."""

    task = "tests.chores.tasks.run_chore"
    batch_size = 2

    with_email = models.PositiveIntegerField(default=0)


class ChoreItem(JobItem):
    job = models.ForeignKey(Chore, on_delete=models.CASCADE, related_name="items")
