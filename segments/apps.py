from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "segments"

    def ready(self):
        from people import signals
        from segments import receivers

        signals.people_deleting.connect(receivers.forget_memberships,
                                        dispatch_uid="segments-deleting")
        signals.people_merging.connect(receivers.move_manual_memberships,
                                       dispatch_uid="segments-merging")
        signals.people_changing.connect(receivers.note_changed_people,
                                       dispatch_uid="segments-changed")
