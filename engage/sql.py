"""Small helpers for the raw SQL that set-based operations write, on both databases."""

import json

from django.db import connection


def in_values(column: str, values: list) -> tuple[str, list]:
    """Return ``column`` IN values as SQL and its parameters: one array on PostgreSQL.

    One array parameter keeps the statement's text the same for any number of values.
    """
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)


def in_ids(column: str, ids: list[int]) -> tuple[str, list]:
    """Return ``column`` IN ids (primary keys) as SQL and its parameters."""
    return in_values(column, ids)


# --- one-statement reads and writes for hot paths ---------------------------------------
#
# The ORM spends about half a millisecond of CPU building each statement; on the paths
# every API call takes (finding a workspace or a person, writing an event or an activity
# row) that is most of the request. These helpers run fixed statement texts instead, and
# still read and write every value the way the model's fields do.


def _columns(model) -> list:
    return [field for field in model._meta.concrete_fields]


def _converters(model, fields) -> list:
    """Return, per field, the functions that turn a database value into the field's."""
    found = []
    for field in fields:
        expression = field.get_col(model._meta.db_table)
        found.append((expression, [*connection.ops.get_db_converters(expression),
                                   *field.get_db_converters(connection)]))
    return found


def select_models(model, where: str, params: list, *, lock: bool = False,
                  limit: int | None = None) -> list:
    """Return the ``model`` instances ``WHERE where`` selects, as the ORM would build them.

    ``lock`` takes a row lock (``FOR UPDATE``) where the database has them.
    """
    fields = _columns(model)
    sql = (f"SELECT {', '.join(connection.ops.quote_name(f.column) for f in fields)} "
           f"FROM {connection.ops.quote_name(model._meta.db_table)} WHERE {where}")
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    if lock and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return []
    converters = _converters(model, fields)
    names = [f.attname for f in fields]
    found = []
    for row in rows:
        values = list(row)
        for index, (expression, functions) in enumerate(converters):
            for function in functions:
                values[index] = function(values[index], expression, connection)
        found.append(model.from_db(connection.alias, names, values))
    return found


def insert_rows(model, names: list[str], rows: list[tuple], *, returning: tuple[str, ...] = (),
                ignore_conflicts: bool = False) -> list[tuple]:
    """Insert ``rows`` (values of the fields ``names``, in order) in one statement.

    The rows travel as one JSON parameter that the database unpacks, so the statement's
    text is the same for any number of rows and no value is quoted one by one in Python.
    Return the ``returning`` columns of the rows written, in no particular order.
    """
    if not rows:
        return []
    postgres = connection.vendor == "postgresql"
    fields = [model._meta.get_field(name) for name in names]
    prepare = [_json_ready(field, postgres) for field in fields]
    data = json.dumps([[to_json(value) if to_json else value
                        for to_json, value in zip(prepare, row, strict=True)] for row in rows],
                      separators=(",", ":"), ensure_ascii=False)
    quote = connection.ops.quote_name
    if postgres:
        values = [f"r->{i}" if field.get_internal_type() == "JSONField"
                  else f"(r->>{i})::{field.db_type(connection)}" for i, field in enumerate(fields)]
        source = "jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS x(r, n) ORDER BY n"
    else:
        values = [f"json_extract(value, '$[{i}]')" for i in range(len(fields))]
        # SQLite reads an ON CONFLICT right after FROM as part of a join: WHERE ends it.
        source = "json_each(%s) WHERE true ORDER BY key"
    sql = (f"INSERT INTO {quote(model._meta.db_table)} "
           f"({', '.join(quote(f.column) for f in fields)}) "
           f"SELECT {', '.join(values)} FROM {source}")
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(model._meta.get_field(r).column) for r in returning)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [data])
        return cursor.fetchall() if returning else []


def _json_ready(field, postgres: bool):
    """Return how a value of ``field`` is written into the rows' JSON (None: as it is)."""
    kind = field.get_internal_type()
    if kind == "DateTimeField":
        if postgres:
            return lambda value: None if value is None else value.isoformat()
        return lambda value: connection.ops.adapt_datetimefield_value(value)
    if kind == "JSONField" and not postgres:
        # SQLite keeps JSON as text: the text goes in as a string.
        return lambda value: json.dumps(value, cls=field.encoder)
    return None


def update_fields(instance, names) -> None:
    """Write the fields ``names`` of a saved instance, as ``save(update_fields=…)`` would."""
    fields = [instance._meta.get_field(name) for name in sorted(names)]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(instance._meta.db_table)} "
            f"SET {', '.join(f'{quote(field.column)} = %s' for field in fields)} "
            f"WHERE {quote(instance._meta.pk.column)} = %s",
            [*(field.get_db_prep_save(getattr(instance, field.attname), connection)
               for field in fields), instance.pk])
