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
    fields = [model._meta.get_field(name) for name in names]
    values, source = _row_source(fields)
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(model._meta.db_table)} "
           f"({', '.join(quote(f.column) for f in fields)}) "
           f"SELECT {', '.join(values)} FROM {source}")
    if connection.vendor != "postgresql":
        # SQLite reads an ON CONFLICT right after FROM as part of a join: WHERE ends it.
        sql += " WHERE true"
    sql += " ORDER BY n"
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(model._meta.get_field(r).column) for r in returning)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [_rows_json(fields, rows)])
        return cursor.fetchall() if returning else []


def update_rows(model, names: list[str], rows: list[tuple]) -> None:
    """Set the fields ``names`` of many rows in one statement.

    Each row is the primary key followed by the values of ``names``, in order.
    """
    if not rows:
        return
    fields = [model._meta.pk, *(model._meta.get_field(name) for name in names)]
    values, source = _row_source(fields)
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    assignments = ", ".join(f"{quote(field.column)} = {value}"
                            for field, value in zip(fields[1:], values[1:], strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {assignments} FROM {source} "
            f"WHERE {table}.{quote(model._meta.pk.column)} = {values[0]}",
            [_rows_json(fields, rows)])


def _row_source(fields) -> tuple[list[str], str]:
    """Return, per field, the SQL reading its value from a row of the JSON parameter, and
    the FROM clause that unpacks that parameter into rows (``n``: their order)."""
    if connection.vendor == "postgresql":
        values = []
        for i, field in enumerate(fields):
            if field.get_internal_type() == "JSONField":
                # JSON null is SQL NULL for a nullable field, as the ORM writes None.
                values.append(f"NULLIF(r->{i}, 'null'::jsonb)" if field.null else f"r->{i}")
            else:
                values.append(f"(r->>{i})::{field.db_type(connection)}")
        return values, "jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS x(r, n)"
    values = [f"json_extract(x.value, '$[{i}]')" for i in range(len(fields))]
    return values, "(SELECT value, key AS n FROM json_each(%s)) AS x"


def _rows_json(fields, rows) -> str:
    postgres = connection.vendor == "postgresql"
    prepare = [_json_ready(field, postgres) for field in fields]
    return json.dumps([[to_json(value) if to_json else value
                        for to_json, value in zip(prepare, row, strict=True)] for row in rows],
                      separators=(",", ":"), ensure_ascii=False)


def _json_ready(field, postgres: bool):
    """Return how a value of ``field`` is written into the rows' JSON (None: as it is)."""
    kind = field.get_internal_type()
    if kind == "DateTimeField":
        if postgres:
            return lambda value: None if value is None else value.isoformat()
        return lambda value: connection.ops.adapt_datetimefield_value(value)
    if kind == "JSONField" and not postgres:
        # SQLite keeps JSON as text: the text goes in as a string.
        return lambda value: None if value is None else json.dumps(value, cls=field.encoder)
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
