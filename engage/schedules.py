"""Every recurring task of engage, declared once; applying it twice changes nothing."""

SCHEDULES = [
    # (name, function, minutes between runs)
    # One schedule for every kind of background job (engage.jobs.kinds()).
    ("resume stalled jobs", "engage.tasks.resume_stalled_jobs", 1),
    # Often: every change queues its own evaluation; this catches those whose enqueue failed.
    ("queue owed segment evaluations", "segments.tasks.queue_owed_evaluations", 1),
    ("recompute time-relative segments", "segments.tasks.recompute_time_relative_segments", 10),
    # Starts the chain of senders of due emails (one connection per batch) and webhook
    # calls when none runs (each hands over to the next).
    ("send due emails and webhooks", "campaigns.tasks.relay_delivery_sender", 1),
    # Starts the chain of journey sweepers when none runs (each hands over to the next).
    ("advance due journeys", "campaigns.tasks.relay_journey_sweeper", 1),
    ("start scheduled campaigns", "campaigns.tasks.start_scheduled_campaigns", 1),
    ("enter people who came to match segment triggers",
     "campaigns.tasks.sweep_segment_triggers", 1),
    ("enter people on their dates", "campaigns.tasks.scan_date_triggers", 1),
    ("enter people owed by events", "campaigns.tasks.enter_due_events", 1),
]

# Schedules that an earlier engage declared and that the ones above replace.
RETIRED = [
    "resume stalled deletion jobs",
    "resume stalled membership jobs",
    "resume stalled identifier mode changes",
]


def ensure_schedules(**kwargs) -> None:
    """Create or update the django-q2 schedules listed above, and drop the retired ones."""
    from django_q.models import Schedule

    Schedule.objects.filter(name__in=RETIRED).delete()
    for name, func, minutes in SCHEDULES:
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes,
                      "repeats": -1},
        )
