"""django-q2 entry points for workspaces: ids in, one service call out."""

from engage import jobs, services
from engage.models import IdentifierModeChange


def resume_stalled_jobs() -> int:
    """Hand out again the jobs of every kind whose worker died or whose task was lost."""
    return jobs.resume_every_stalled()


def run_identifier_mode_change(change_id: int) -> None:
    """Carry out an identifier mode change; mark it failed if an error stops it."""
    jobs.run_task(IdentifierModeChange, change_id, services.run_identifier_mode_change)


def resume_stalled_identifier_mode_changes() -> int:
    """Hand out again the identifier mode changes whose worker died or whose task was lost."""
    return jobs.resume_stalled(IdentifierModeChange)
