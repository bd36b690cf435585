"""The recurring tasks: declared once, applied idempotently, each naming a real function."""

from django.utils.module_loading import import_string
from django_q.models import Schedule

from engage.schedules import SCHEDULES, ensure_schedules


def test_every_schedule_is_created_once_and_names_a_function(db):
    ensure_schedules()
    ensure_schedules()  # applying them again changes nothing
    assert Schedule.objects.count() == len(SCHEDULES)
    for name, func, minutes in SCHEDULES:
        schedule = Schedule.objects.get(name=name)
        assert (schedule.func, schedule.minutes, schedule.repeats) == (func, minutes, -1)
        assert callable(import_string(func))
    assert "segments.tasks.resume_stalled_membership_jobs" in {func for _, func, _ in SCHEDULES}
