"""django-q2 entry points of the core: ids in, one call out."""

from engage import jobs


def resume_stalled_jobs() -> int:
    """Hand out again the jobs of every kind whose worker died or whose task was lost."""
    return jobs.resume_every_stalled()
