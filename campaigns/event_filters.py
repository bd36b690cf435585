"""Event filters, as a trigger or a goal sets them on an event's data.

They are the segment contract's attribute conditions, compiled by the segments' compiler
so that they mean what segment conditions mean; ``value1|value2`` with ``contains`` or
``not_contains`` means any of the values, as Customer.io's event filters allow.
"""

from django.db import connection

from engage.sql import in_ids
from segments import conditions

# Operators whose value may list alternatives as ``a|b``, and how they combine.
ANY_OF_OPERATORS = {"contains": "or", "not_contains": "and"}


def events_passing(workspace_id: int, filters: list[dict], event_ids: list[int]) -> set[int]:
    """Return the events whose data passes event filters (a trigger's, a goal's), compiled
    by the segments' compiler so that they mean what segment conditions mean."""
    if not filters or not event_ids:
        return set(event_ids)
    compiler = conditions.Compiler(correlated=True, workspace_id=workspace_id)
    where = [_filter_sql(compiler, condition) for condition in filters]
    ids_sql, ids_params = in_ids("ev.id", event_ids)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ev.id FROM people_event ev WHERE {ids_sql} AND "
                       + " AND ".join(where), [*ids_params, *compiler.params])
        return {pk for (pk,) in cursor.fetchall()}


def _filter_sql(compiler: conditions.Compiler, condition: dict) -> str:
    """Compile one event filter; ``a|b`` with contains / not_contains means any of them."""
    joiner = ANY_OF_OPERATORS.get(condition["operator"])
    value = condition.get("value")
    if joiner and isinstance(value, str) and "|" in value:
        parts = [compiler.attribute({**condition, "value": part}, "ev.data", columns=False)
                 for part in value.split("|")]
        return "(" + f" {joiner.upper()} ".join(parts) + ")"
    return compiler.attribute(condition, "ev.data", columns=False)
