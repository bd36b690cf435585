"""Confirmed deletions: the number of people a marketer confirmed is the number deleted."""

from collections.abc import Callable

from django.db import transaction

from people.models import DeletionJob


class SelectionChanged(Exception):
    """The set to delete no longer holds the number of people the marketer confirmed."""

    def __init__(self, count: int):
        super().__init__(f"the selection now holds {count} people")
        self.count = count


def start_if_confirmed(start: Callable[[], DeletionJob], *, confirmed: str | int | None
                       ) -> DeletionJob:
    """Start a deletion job with ``start()`` if its set holds exactly ``confirmed`` people.

    The job's snapshot is what it deletes, so that is what is compared. When people started
    or stopped matching since the dialog counted them, the job is rolled back with its
    queued task, and ``SelectionChanged`` tells the count now.
    """
    try:
        expected = int(confirmed)
    except (TypeError, ValueError):
        expected = None
    with transaction.atomic():
        job = start()
        if job.total != expected:
            raise SelectionChanged(job.total)
    return job
