"""Every recurring task of engage, declared once; applying it twice changes nothing."""

SCHEDULES = [
    # (name, function, minutes between runs)
    ("resume stalled deletion jobs", "people.tasks.resume_stalled_deletion_jobs", 5),
    ("resume stalled membership jobs", "segments.tasks.resume_stalled_membership_jobs", 5),
    ("resume stalled identifier mode changes",
     "people.tasks.resume_stalled_identifier_mode_changes", 5),
    ("recompute time-relative segments", "segments.tasks.recompute_time_relative_segments", 10),
]


def ensure_schedules(**kwargs) -> None:
    """Create or update the django-q2 schedules listed above."""
    from django_q.models import Schedule

    for name, func, minutes in SCHEDULES:
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes,
                      "repeats": -1},
        )
