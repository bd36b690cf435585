from engage import jobs
from people.models import Person
from tests.chores.models import Chore


def run_chore(job_id: int) -> None:
    jobs.run_task(Chore, job_id, lambda pk: jobs.run(Chore, pk, _count_batch))


def _count_batch(job: Chore, person_pks: list[int]) -> None:
    job.with_email += Person.objects.filter(pk__in=person_pks, email__isnull=False).count()
