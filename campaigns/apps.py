from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"

    def ready(self):
        from campaigns import receivers
        from people import signals
        from segments.signals import memberships_changed

        signals.people_deleting.connect(receivers.forget_people,
                                        dispatch_uid="campaigns-deleting")
        signals.people_merging.connect(receivers.move_journeys,
                                       dispatch_uid="campaigns-merging")
        memberships_changed.connect(receivers.read_membership_log,
                                    dispatch_uid="campaigns-memberships")
        signals.events_stored.connect(receivers.note_events, dispatch_uid="campaigns-events")
