"""The only way any surface changes people: identify, events, devices, merge, delete,
suppress.

Every function validates its whole input before it writes, so bad input raises
``InvalidInput`` and leaves nothing half-written. Calls that reference a suppressed
identifier are accepted and change nothing, as in Customer.io.

One module a sub-domain; callers import from ``people.services``:
``common`` (references, outcomes, finding people, activity, change announcements),
``identify``, ``events``, ``devices``, ``merge``, ``deletion``, ``suppression`` and
``jobs`` (deletion jobs).
"""

from people.errors import InvalidInput
from people.services.common import (
    ACTIVITY_FIELDS,
    DeletionResult,
    Outcome,
    Ref,
    Result,
    make_ref,
    parse_identifier,
)
from people.services.deletion import delete_people, delete_person
from people.services.devices import add_device, delete_device
from people.services.events import (
    EVENT_DEDUP_INDEX,
    EVENT_FIELDS,
    track_anonymous_event,
    track_event,
)
from people.services.identify import LINK_WINDOW, PERSON_FIELDS, identify_person, update_people
from people.services.jobs import (
    DELETION_TASK,
    fail_deletion_job,
    retry_deletion_job,
    run_deletion_job,
    start_deletion_job,
)
from people.services.merge import merge_people
from people.services.suppression import (
    forget_suppressed_emails,
    is_suppressed,
    suppress_identifier,
    suppressions_of,
    unsuppress_identifier,
)

__all__ = [
    "ACTIVITY_FIELDS", "DELETION_TASK", "EVENT_DEDUP_INDEX", "EVENT_FIELDS", "LINK_WINDOW",
    "PERSON_FIELDS", "DeletionResult", "InvalidInput", "Outcome", "Ref", "Result",
    "add_device", "delete_device", "delete_people", "delete_person", "fail_deletion_job",
    "forget_suppressed_emails",
    "identify_person", "is_suppressed", "make_ref", "merge_people", "parse_identifier",
    "retry_deletion_job", "run_deletion_job", "start_deletion_job", "suppress_identifier",
    "suppressions_of", "track_anonymous_event", "track_event", "unsuppress_identifier",
    "update_people",
]
