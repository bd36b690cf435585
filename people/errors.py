"""The input errors of the people services: they are engage's own (``engage.errors``),
which every API turns into the error shapes its callers expect."""

from engage.errors import InvalidInput, Problem

__all__ = ["InvalidInput", "Problem"]
