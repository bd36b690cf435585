from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"

    def ready(self):
        from anymail.signals import tracking

        from campaigns import (
            bounces,
            checks,  # noqa: F401 - registers the system checks
            engagement,
            receivers,
        )
        from people import signals
        from segments import conditions
        from segments.signals import memberships_changed

        signals.people_deleting.connect(receivers.forget_people,
                                        dispatch_uid="campaigns-deleting")
        signals.people_merging.connect(receivers.move_journeys,
                                       dispatch_uid="campaigns-merging")
        memberships_changed.connect(receivers.read_membership_log,
                                    dispatch_uid="campaigns-memberships")
        signals.events_stored.connect(receivers.note_events, dispatch_uid="campaigns-events")
        # ESPs' opens, clicks, bounces, complaints and unsubscribes (django-anymail).
        tracking.connect(bounces.on_tracking_event, dispatch_uid="campaigns-esp-tracking")
        conditions.register(engagement.KIND)
