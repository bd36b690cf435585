"""Errors that services raise for bad input.

Each problem names the field, a short machine reason and a message for people; the APIs
(``engage.api``) turn them into the error shapes their callers expect.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    field: str
    reason: str
    message: str


class InvalidInput(Exception):
    """Raised before anything is written, with every problem found in the input."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))

    @classmethod
    def single(cls, field: str, reason: str, message: str) -> "InvalidInput":
        return cls([Problem(field, reason, message)])
