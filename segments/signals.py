"""What segments announce to other apps (campaigns)."""

from django.dispatch import Signal

# Sent after commit when a transaction wrote entries or exits to the membership log.
# Arguments: workspace_id (int), segment_ids (list[int]). Receivers read what is new with
# ``segments.log.read_changes``; the signal only says where to look, and a receiver that
# misses one (a crash) loses nothing: the log keeps every entry until it is read.
memberships_changed = Signal()
