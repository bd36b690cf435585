"""How segments follow changes to people (connected in SegmentsConfig.ready)."""

from segments import services


def forget_memberships(sender, workspace, person_ids, **kwargs):
    services.forget_memberships(workspace, person_ids)


def move_manual_memberships(sender, workspace, primary_id, secondary_id, **kwargs):
    services.move_manual_memberships(workspace, primary_id, secondary_id)


def note_changed_people(sender, workspace_id, person_ids, **kwargs):
    services.note_changed_people(workspace_id, person_ids)
