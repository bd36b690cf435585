"""Background jobs over many people: a snapshot of the confirmed set, then batches.

A job (a ``BackgroundJob`` model with an ``items`` relation of ``person_pk`` rows) fixes
its set when it is started: people who match the same filter later are not touched. A
worker then takes the items a batch at a time; each batch does its work, drops its items
and adds to the job's counts in one transaction, so a worker killed mid-job loses
nothing, counts nothing twice, and any worker can carry on where it stopped.

A job meant for everyone who matches when it runs (such as filling every person's email
key) walks them instead: no snapshot, a ``cursor`` (the last primary key handled) that
moves on with each batch's transaction.

Each kind of job is a concrete ``BackgroundJob`` subclass that declares its ``task``,
``batch_size`` and mode (``walks``); ``kinds()`` finds them all in the app registry, so
the one schedule (``resume_every_stalled``) resumes every kind, new ones included.
"""

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.apps import apps
from django.core.exceptions import EmptyResultSet
from django.db import models, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from engage.models import BackgroundJob

logger = logging.getLogger(__name__)

# A worker holds the job it runs for this long, renewed with every batch: a job whose
# lease lapsed lost its worker, and the schedule (every minute) hands it out again. A
# batch that takes longer only has the job handed out needlessly, never run twice: the
# batch holds the job's row lock, and the next batch goes to one worker alone.
LEASE = timedelta(seconds=20)
# A job that no worker took up for this long (queued behind others, or its task lost).
STALLED_AFTER = timedelta(minutes=15)


class Stop(Exception):
    """Raised by a batch handler when the job cannot go on (the message says why)."""


def snapshot(job: BackgroundJob, people: QuerySet) -> int:
    """Copy the people's primary keys into the job's items in one statement; return how many.

    Only primary keys are kept, never personal data.
    """
    items = job.items.model
    ids = people.order_by().annotate(snapshot_pk=F("pk")).values_list("snapshot_pk")
    try:
        sql, params = ids.query.sql_with_params()
    except EmptyResultSet:
        return 0
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {items._meta.db_table} (job_id, person_pk) "
            f"SELECT %s, sub.snapshot_pk FROM ({sql}) sub",
            [job.pk, *params],
        )
        return cursor.rowcount


def kinds() -> list[type[BackgroundJob]]:
    """Return every kind of job: the concrete subclasses of ``BackgroundJob`` installed."""
    return [model for model in apps.get_models() if issubclass(model, BackgroundJob)]


def start(job: BackgroundJob, people: QuerySet, *, queue_over: int = 0) -> BackgroundJob:
    """Save a new job with its snapshot and have its kind's task run it after commit.

    A kind that ``walks`` takes no snapshot: the job walks ``people`` as they are when each
    batch runs, in primary-key order (see ``run``), and ``total`` is their count now.
    A job of nobody is done at once and queues nothing; nor does a job of at most
    ``queue_over`` people, which its caller runs at once (should that run die, the job is
    resumed as a stalled one).
    """
    from django_q.tasks import async_task

    now = timezone.now()
    job.created_at = job.updated_at = now
    with transaction.atomic():
        job.save()
        job.total = _walked(job, people).count() if job.walks else snapshot(job, people)
        if job.total == 0:
            job.state = job.State.DONE
            job.finished_at = now
        job.save(update_fields=["total", "state", "finished_at"])
        if job.total > queue_over:
            task, job_id = job.task, job.pk
            transaction.on_commit(lambda: async_task(task, job_id, task_name=_name(job, job_id)))
    return job


def run(model: type[BackgroundJob], job_id: int, handle: Callable[[BackgroundJob, list[int]], None],
        *, max_batches: int | None = None,
        finish: Callable[[BackgroundJob], None] | None = None,
        select_related: tuple[str, ...] = (),
        walk: Callable[[BackgroundJob], QuerySet] | None = None) -> BackgroundJob | None:
    """Run a job's batches until it is done; safe to call again after any interruption.

    ``handle(job, person_pks)`` does one batch of the kind's ``batch_size`` inside the
    batch's transaction and adds to the job's own counts; it raises ``Stop`` when the job
    cannot go on, which fails the job with that message and keeps what was done.
    ``finish(job)``, if given, runs once in the transaction that ends the job. A job
    another worker holds (its row locked, or its lease current) is left to it; each batch
    renews this worker's lease, and leaving lets it go.

    A kind that ``walks`` takes its batches from ``walk(job)`` (people, or rows naming them
    in the column ``walk_key``) in primary-key order after ``job.cursor``, the last
    primary key handled, instead of from its items.
    """
    if model.walks != (walk is not None):
        raise TypeError(f"{model.__name__}: pass walk= exactly when the kind walks")
    owner = uuid.uuid4().hex
    try:
        return _run(model, job_id, handle, owner, max_batches=max_batches, finish=finish,
                    select_related=select_related, walk=walk)
    finally:
        model.objects.filter(pk=job_id, lease_owner=owner).update(lease_owner="",
                                                                  leased_until=None)


def _run(model, job_id, handle, owner, *, max_batches, finish, select_related, walk):
    batch_size = model.batch_size
    batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        with transaction.atomic():
            job = (model.objects.select_for_update(skip_locked=True, of=("self",))
                   .select_related(*select_related).filter(pk=job_id).first())
            if job is None or job.is_finished:
                return job
            now = timezone.now()
            if (job.lease_owner not in ("", owner) and job.leased_until is not None
                    and job.leased_until > now):
                return job  # another worker holds it
            job.lease_owner, job.leased_until = owner, now + LEASE
            if job.state == job.State.PENDING:
                job.state = job.State.RUNNING
                job.started_at = now
            if walk is None:
                items = list(job.items.order_by("person_pk").values_list("pk", "person_pk")
                             [:batch_size])
                person_pks = [person_pk for _, person_pk in items]
            else:
                key = job.walk_key
                person_pks = list(_walked(job, walk(job)).filter(**{f"{key}__gt": job.cursor})
                                  .order_by(key)[:batch_size])
            if not person_pks:
                job.state = job.State.DONE
            else:
                try:
                    with transaction.atomic():
                        handle(job, person_pks)
                except Stop as stop:
                    job.state = job.State.FAILED
                    job.error = str(stop)
                    if walk is None:
                        job.items.all().delete()
                else:
                    if walk is None:
                        job.items.filter(pk__in=[pk for pk, _ in items]).delete()
                    else:
                        job.cursor = person_pks[-1]
                    job.done += len(person_pks)
            job.updated_at = now
            if job.is_finished:
                job.finished_at = now
                job.lease_owner, job.leased_until = "", None
                if finish is not None:
                    finish(job)
            job.save()
            if job.is_finished:
                return job
    return model.objects.filter(pk=job_id).first()


def _walked(job: BackgroundJob, people: QuerySet) -> QuerySet:
    """The people a walking job walks, as their primary keys: each once, whatever the
    query they come from (the members of several segments, say)."""
    key = job.walk_key
    ids = people.values_list(key, flat=True)
    return ids if key == "pk" else ids.distinct()


def run_task(model: type[BackgroundJob], job_id: int, run_job: Callable[[int], object]) -> None:
    """Run a job as a worker's task; mark the job failed if an error stops it (and re-raise,
    so the task is recorded as failed too)."""
    try:
        run_job(job_id)
    except Exception as error:
        logger.exception("%s %s failed", model._meta.verbose_name, job_id)
        fail(model, job_id, f"{type(error).__name__}: {error}")
        raise


def fail(model: type[BackgroundJob], job_id: int, error: str) -> None:
    """Mark a job failed with the error, keeping what it already did."""
    now = timezone.now()
    model.objects.filter(pk=job_id).exclude(state=model.State.DONE).update(
        state=model.State.FAILED, error=error[:2000], updated_at=now, finished_at=now,
        lease_owner="", leased_until=None,
    )


def retry(job: BackgroundJob) -> None:
    """Run a failed or stalled job again from where it stopped."""
    from django_q.tasks import async_task

    model = type(job)
    model.objects.filter(pk=job.pk).exclude(state=model.State.DONE).update(
        state=model.State.RUNNING, error="", finished_at=None, updated_at=timezone.now(),
        lease_owner="", leased_until=None,
    )
    task, job_id = model.task, job.pk
    transaction.on_commit(lambda: async_task(task, job_id, task_name=_name(job, job_id)))


def resume_stalled(model: type[BackgroundJob]) -> int:
    """Hand out again the jobs of a kind whose worker died (its lease lapsed) or whose task
    was lost; return how many."""
    now = timezone.now()
    stalled = model.objects.filter(
        Q(leased_until__lt=now) | Q(updated_at__lt=now - STALLED_AFTER),
        state__in=[model.State.PENDING, model.State.RUNNING],
    )
    count = 0
    for job in stalled.only("pk").iterator():
        retry(job)
        count += 1
    return count


def resume_every_stalled() -> int:
    """Hand out again the stalled jobs of every kind; return how many."""
    return sum(resume_stalled(model) for model in kinds())


def _name(job: models.Model, job_id: int) -> str:
    return f"{job._meta.model_name}-{job_id}"
