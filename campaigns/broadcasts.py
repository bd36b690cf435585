"""API-triggered broadcasts: ``POST /v1/campaigns/{id}/triggers`` enters recipients.

A campaign triggered by ``{"api": {}}`` is a broadcast: each trigger names its recipients
(Customer.io's body: a ``recipients`` condition tree, ``ids``, ``emails`` or
``per_user_data``; without any, everyone) and its ``data`` (``{{trigger.*}}``, a
recipient's own ``per_user_data`` merged over it). The campaign's own ``filters`` narrow
every audience. ``trigger_broadcast`` checks the request, fixes the recipients in one
statement (a ``BroadcastTrigger`` job's items, ``engage.jobs``) and returns at once; a
worker enters them in batches, one journey per person keyed by the trigger and the
person, so a retried batch enters nobody twice.

As Customer.io: one trigger per campaign every 10 seconds and at most 5 waiting
(``RateLimited``); ``data`` at most 50 000 bytes and at most 10 000 ids, emails or
per-user entries; people are never created, and ids or emails nobody has fail the
trigger (nobody enters) unless ``id_ignore_missing`` / ``email_ignore_missing`` say to
skip them. An email several people share (where email is not an identifier) is an error
too unless ``email_add_duplicates`` sends to all of them.
"""

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from campaigns import engine
from campaigns.definition import iter_steps
from campaigns.models import BroadcastTrigger, BroadcastTriggerItem, Campaign
from engage import jobs
from engage.sql import update_rows
from people import validation
from people.errors import InvalidInput, Problem
from people.models import Person
from segments.conditions import ConditionError, matching_people
from segments.conditions import validate as validate_tree

MIN_INTERVAL = timedelta(seconds=10)
MAX_WAITING = 5
MAX_DATA_BYTES = 50_000
MAX_RECIPIENTS = 10_000
AUDIENCES = ("recipients", "ids", "emails", "per_user_data")
FLAGS = ("id_ignore_missing", "email_ignore_missing", "email_add_duplicates")
MAX_ERRORS_KEPT = 100


class TriggerRefused(Exception):
    """The campaign cannot be triggered: not an API-triggered broadcast, or not running."""


class RateLimited(Exception):
    """Another trigger of the campaign came less than 10 seconds ago, or 5 are waiting."""


def trigger_broadcast(campaign: Campaign, body: dict) -> BroadcastTrigger:
    """Record a trigger of a running broadcast and have a worker enter its recipients.

    Raise InvalidInput naming the field at fault, TriggerRefused or RateLimited. A
    trigger naming ids or emails nobody has (not ignored) is returned failed, with them
    in its ``errors``, and enters nobody.
    """
    request = _read(campaign, body)
    with transaction.atomic():
        current = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if current.trigger != Campaign.Trigger.API:
            raise TriggerRefused(f"campaign {current.pk} is not an API-triggered broadcast")
        if current.state != Campaign.State.RUNNING:
            raise TriggerRefused(f"campaign {current.pk} is {current.state}, not running: "
                                 "start it first")
        now = timezone.now()
        triggers = BroadcastTrigger.objects.filter(campaign=current)
        if triggers.filter(created_at__gt=now - MIN_INTERVAL).exists():
            raise RateLimited("a broadcast may be triggered once every 10 seconds")
        if triggers.filter(state__in=[BroadcastTrigger.State.PENDING,
                                      BroadcastTrigger.State.RUNNING]).count() >= MAX_WAITING:
            raise RateLimited(f"{MAX_WAITING} triggers of this broadcast are still waiting")
        job = BroadcastTrigger(
            workspace_id=current.workspace_id, campaign=current, data=request["data"],
            audience=request["audience"], recipients_filter=request.get("recipients"),
            description=f"Broadcast trigger of campaign {current.pk} ({request['audience']})")
        people, errors, own_data = _recipients(current, request)
        if errors:
            job.errors = errors[:MAX_ERRORS_KEPT]
            job.state, job.error = BroadcastTrigger.State.FAILED, (
                f"{len(errors)} recipients could not be found: nobody was entered")
            job.created_at = job.updated_at = job.finished_at = now
            job.save()
            return job
        job = jobs.start(job, people)
        if own_data:
            _attach_data(job, own_data)
    return job


def _read(campaign: Campaign, body: dict) -> dict:
    """Return the request checked: its audience, data, lists and flags."""
    problems: list[Problem] = []
    known = {"data", *AUDIENCES, *FLAGS, "data_file_url"}
    for name in sorted(set(body) - known):
        problems.append(Problem(name, "unknown_field", f"{name} is not a field of a trigger"))
    if body.get("data_file_url") is not None:
        problems.append(Problem("data_file_url", "unsupported",
                                "data_file_url is not supported: send per_user_data"))
    chosen = [name for name in AUDIENCES if body.get(name) is not None]
    if len(chosen) > 1:
        problems.append(Problem(chosen[1], "invalid",
                                "choose one of recipients, ids, emails, per_user_data"))
    request: dict[str, Any] = {"audience": chosen[0] if chosen else "audience"}
    data = body.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(Problem("data", "invalid_type", "data must be an object"))
        data = {}
    elif validation.json_bytes(data) > MAX_DATA_BYTES:
        problems.append(Problem("data", "too_large",
                                f"data may be at most {MAX_DATA_BYTES} bytes"))
    elif problem := validation.value_problem(data, field="data"):
        problems.append(problem)
    request["data"] = data
    for flag in FLAGS:
        value = body.get(flag, False)
        if not isinstance(value, bool):
            problems.append(Problem(flag, "invalid_type", f"{flag} must be true or false"))
        request[flag] = value is True
    if chosen and not problems:
        name = chosen[0]
        reader = {"recipients": _read_recipients, "ids": _read_ids, "emails": _read_emails,
                  "per_user_data": _read_per_user_data}[name]
        request[name] = reader(campaign, body[name], problems)
    if problems:
        raise InvalidInput(problems)
    return request


def _read_recipients(campaign: Campaign, tree: Any, problems: list[Problem]) -> Any:
    if problem := validation.value_problem(tree, field="recipients"):
        problems.append(problem)
        return None
    try:
        validate_tree(tree, workspace=campaign.workspace)
    except ConditionError as error:
        problems.append(Problem("recipients", "invalid", f"recipients: {error}"))
    return tree


def _read_list(name: str, value: Any, problems: list[Problem]) -> list | None:
    if not isinstance(value, list) or not value:
        problems.append(Problem(name, "invalid_type", f"{name} must be a list of 1 to "
                                                      f"{MAX_RECIPIENTS} items"))
        return None
    if len(value) > MAX_RECIPIENTS:
        problems.append(Problem(name, "too_many",
                                f"{name} may hold at most {MAX_RECIPIENTS} items"))
        return None
    return value


def _identifier(kind: str, value: Any, field: str, problems: list[Problem]) -> str | None:
    found = validation.identifier_problems(kind, value, field=field)
    if found:
        problems.extend(found[:1])
        return None
    return str(value)


def _read_ids(campaign: Campaign, value: Any, problems: list[Problem]) -> list[str]:
    items = _read_list("ids", value, problems) or []
    return [text for index, item in enumerate(items)
            if (text := _identifier("id", item, f"ids[{index}]", problems)) is not None]


def _read_emails(campaign: Campaign, value: Any, problems: list[Problem]) -> list[str]:
    items = _read_list("emails", value, problems) or []
    return [text for index, item in enumerate(items)
            if (text := _identifier("email", item, f"emails[{index}]", problems)) is not None]


def _read_per_user_data(campaign: Campaign, value: Any, problems: list[Problem]
                        ) -> list[tuple[str, str, dict]]:
    """Return (kind, identifier, data) per entry."""
    items = _read_list("per_user_data", value, problems) or []
    out = []
    for index, item in enumerate(items):
        here = f"per_user_data[{index}]"
        if not isinstance(item, dict):
            problems.append(Problem(here, "invalid_type", f"{here} must be an object"))
            continue
        kinds = [kind for kind in ("id", "email") if item.get(kind) not in (None, "")]
        if len(kinds) != 1 or set(item) - {"id", "email", "data"}:
            problems.append(Problem(here, "invalid", f"{here} must name one id or email, "
                                                     "with its data"))
            continue
        data = item.get("data", {})
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.append(Problem(f"{here}.data", "invalid_type",
                                    f"{here}.data must be an object"))
            continue
        if validation.json_bytes(data) > MAX_DATA_BYTES:
            problems.append(Problem(f"{here}.data", "too_large",
                                    f"{here}.data may be at most {MAX_DATA_BYTES} bytes"))
            continue
        text = _identifier(kinds[0], item[kinds[0]], f"{here}.{kinds[0]}", problems)
        if text is not None:
            out.append((kinds[0], text, data))
    return out


# --- who the recipients are ------------------------------------------------------------


def _recipients(campaign: Campaign, request: dict
                ) -> tuple[QuerySet, list[dict], dict[int, dict]]:
    """Return the recipients (people), what could not be found, and per-person data."""
    workspace = campaign.workspace
    everyone = Person.objects.filter(workspace=workspace)
    audience = request["audience"]
    errors: list[dict] = []
    own_data: dict[int, dict] = {}
    if audience == "audience":
        people = everyone
    elif audience == "recipients":
        people = matching_people(workspace, request["recipients"])
    elif audience == "ids":
        people, errors = _by_ids(everyone, request["ids"], request["id_ignore_missing"])
    elif audience == "emails":
        people, errors = _by_emails(campaign, everyone, request["emails"], request)
    else:
        entries = request["per_user_data"]
        ids = [value for kind, value, _ in entries if kind == "id"]
        emails = [value for kind, value, _ in entries if kind == "email"]
        by_id, id_errors = _by_ids(everyone, ids, request["id_ignore_missing"])
        by_email, email_errors = _by_emails(campaign, everyone, emails, request)
        people = everyone.filter(Q(pk__in=by_id.values("pk")) | Q(pk__in=by_email.values("pk")))
        errors = id_errors + email_errors
        own_data = _own_data(campaign, entries, by_id, by_email)
    filters = campaign.definition.get("filters")
    if filters is not None:
        people = people.filter(pk__in=matching_people(workspace, filters).values("pk"))
    return people, errors, own_data


def _by_ids(everyone: QuerySet, ids: list[str], ignore_missing: bool
            ) -> tuple[QuerySet, list[dict]]:
    people = everyone.filter(customer_id__in=ids)
    errors = []
    if not ignore_missing and ids:
        found = set(people.values_list("customer_id", flat=True))
        errors = [{"reason": "id_not_found", "id": value}
                  for value in dict.fromkeys(ids) if value not in found]
    return people, errors


def _by_emails(campaign: Campaign, everyone: QuerySet, emails: list[str], request: dict
               ) -> tuple[QuerySet, list[dict]]:
    if not emails:
        return everyone.none(), []
    if campaign.workspace.email_is_identifier:
        keys = {validation.email_key(email): email for email in emails}
        people = everyone.filter(email_key__in=list(keys))
        counts = dict(people.values_list("email_key").annotate(n=Count("pk")))
    else:
        # Email is an attribute here: not folded into a key, and several people may share one.
        keys = {email.lower(): email for email in emails}
        people = everyone.annotate(lower_email=Lower("email")).filter(
            lower_email__in=list(keys))
        counts = dict(people.values_list("lower_email").annotate(n=Count("pk")))
    errors = []
    if not request["email_ignore_missing"]:
        errors += [{"reason": "email_not_found", "email": email}
                   for key, email in keys.items() if key not in counts]
    if not request["email_add_duplicates"]:
        errors += [{"reason": "email_shared", "email": keys[key], "people": count}
                   for key, count in counts.items() if count > 1]
    return people, errors


def _own_data(campaign: Campaign, entries: list[tuple[str, str, dict]], by_id: QuerySet,
              by_email: QuerySet) -> dict[int, dict]:
    """Return each found person's per-user data (a later entry for them wins)."""
    pks_of: dict[tuple[str, str], list[int]] = {}
    for customer_id, pk in by_id.values_list("customer_id", "pk"):
        pks_of.setdefault(("id", customer_id), []).append(pk)
    if any(kind == "email" for kind, _, _ in entries):
        key_column = "email_key" if campaign.workspace.email_is_identifier else "lower_email"
        for key, pk in by_email.values_list(key_column, "pk"):
            pks_of.setdefault(("email", key), []).append(pk)
    own: dict[int, dict] = {}
    for kind, value, data in entries:
        if kind == "email":
            value = (validation.email_key(value) if campaign.workspace.email_is_identifier
                     else value.lower())
        for pk in pks_of.get((kind, value), []):
            own[pk] = data
    return own


def _attach_data(job: BroadcastTrigger, own_data: dict[int, dict]) -> None:
    """Give each of the job's items its person's own data, in one statement."""
    items = job.items.filter(person_pk__in=list(own_data)).values_list("pk", "person_pk")
    update_rows(BroadcastTriggerItem, ["data"],
                [(pk, own_data[person_pk]) for pk, person_pk in items])


# --- entering, batch by batch ----------------------------------------------------------


def run_trigger(job_id: int, *, max_batches: int | None = None) -> BroadcastTrigger | None:
    """Enter a trigger's recipients batch by batch; safe to run again after any stop."""
    return jobs.run(BroadcastTrigger, job_id, _enter_batch, max_batches=max_batches,
                    select_related=("campaign",))


def retry_trigger(job: BroadcastTrigger) -> bool:
    """Go on entering a failed or stalled trigger's recipients; False for a trigger that
    failed on what it named (it has nobody to enter)."""
    if job.errors:
        return False
    jobs.retry(job)
    return True


def _enter_batch(job: BroadcastTrigger, person_pks: list[int]) -> None:
    campaign = job.campaign
    if campaign.state != Campaign.State.RUNNING:
        raise jobs.Stop(f"the campaign is {campaign.state}: the rest was not entered")
    own_data = dict(job.items.filter(person_pk__in=person_pks)
                    .values_list("person_pk", "data"))
    cio_ids = dict(Person.objects.filter(workspace=job.workspace_id, pk__in=person_pks)
                   .values_list("pk", "cio_id"))  # people deleted since are left out
    entries = [engine.Entry(entry_key(job.pk, pk), pk, cio_ids[pk],
                            {"trigger": {**job.data, **(own_data.get(pk) or {})}})
               for pk in person_pks if pk in cio_ids]
    entered = engine.enter(campaign, entries)
    job.entered += entered
    job.skipped += len(person_pks) - entered


def entry_key(trigger_id: int, person_id: int) -> str:
    """Return the journey entry key of a trigger's recipient: one journey each, ever."""
    return f"b{trigger_id}:{person_id}"


# --- reading a trigger -----------------------------------------------------------------


def _unix(moment) -> int | None:
    return int(moment.timestamp()) if moment else None


def trigger_payload(job: BroadcastTrigger) -> dict:
    """Return a trigger's status: Customer.io's fields, and engage's progress and errors."""
    steps = job.campaign.definition["workflow"]["steps"]
    return {
        "id": job.pk,
        "broadcast_id": job.campaign_id,
        "created_at": _unix(job.created_at),
        "processed_at": _unix(job.finished_at),
        "recipients_count": job.entered,
        "workflow_action_ids": [step["id"] for _, step in iter_steps(steps)
                                if step["type"] in ("email", "webhook")],
        "data_file_position": 0,
        "data_file_processed": False,
        "data_file_error_count": 0,
        "recipients_filter": job.recipients_filter,
        "state": job.state,
        "audience": job.audience,
        "total": job.total,
        "done": job.done,
        "progress": job.progress,
        "entered": job.entered,
        "skipped": job.skipped,
        "error": job.error,
        "errors": job.errors,
    }
