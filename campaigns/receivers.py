"""How campaigns follow changes to people (connected in CampaignsConfig.ready)."""

from campaigns import services


def forget_people(sender, workspace, person_ids, cio_ids, suppress, **kwargs):
    from campaigns import transactional

    services.forget_people(workspace, person_ids, cio_ids, suppress=suppress)
    transactional.forget_people(workspace, cio_ids, suppress=suppress)


def move_journeys(sender, workspace, primary_id, secondary_id, **kwargs):
    services.move_journeys(workspace, primary_id, secondary_id)


def note_events(sender, workspace_id, events, **kwargs):
    from campaigns import goals, triggers

    triggers.note_events(workspace_id, events)
    goals.note_goal_events(workspace_id, events)


def read_membership_log(sender, workspace_id, segment_ids, **kwargs):
    """Have a worker read what the membership log just got (after commit)."""
    from django_q.tasks import async_task

    async_task("campaigns.tasks.enter_from_segments", workspace_id, list(segment_ids))
