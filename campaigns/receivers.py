"""How campaigns follow changes to people (connected in CampaignsConfig.ready)."""

from campaigns import services


def forget_people(sender, workspace, person_ids, cio_ids, suppress, **kwargs):
    services.forget_people(workspace, person_ids, cio_ids, suppress=suppress)


def move_journeys(sender, workspace, primary_id, secondary_id, **kwargs):
    services.move_journeys(workspace, primary_id, secondary_id)
