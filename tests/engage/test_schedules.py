"""The recurring tasks: declared once, applied idempotently, each naming a real function."""

from django.utils.module_loading import import_string
from django_q.models import Schedule

from engage.schedules import RETIRED, SCHEDULES, ensure_schedules


def test_every_schedule_is_created_once_and_names_a_function(db):
    ensure_schedules()
    ensure_schedules()  # applying them again changes nothing
    assert Schedule.objects.count() == len(SCHEDULES)
    for name, func, minutes in SCHEDULES:
        schedule = Schedule.objects.get(name=name)
        assert (schedule.func, schedule.minutes, schedule.repeats) == (func, minutes, -1)
        assert callable(import_string(func))
    assert "engage.tasks.resume_stalled_jobs" in {func for _, func, _ in SCHEDULES}


def test_the_schedules_one_per_kind_of_job_are_replaced_by_the_one_for_every_kind(db):
    Schedule.objects.create(name=RETIRED[0], func="people.tasks.resume_stalled_deletion_jobs",
                            schedule_type=Schedule.MINUTES, minutes=5, repeats=-1)
    ensure_schedules()
    assert not Schedule.objects.filter(name__in=RETIRED).exists()
    assert Schedule.objects.count() == len(SCHEDULES)
