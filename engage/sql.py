"""Small helpers for the raw SQL that set-based operations write, on both databases."""

import json
from datetime import datetime
from typing import Any

import orjson
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import signals
from django.db.models.base import ModelState


def in_values(column: str, values: list) -> tuple[str, list]:
    """Return ``column`` IN values as SQL and its parameters: one array on PostgreSQL.

    One array parameter keeps the statement's text the same for any number of values.
    """
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)


def in_ids(column: str, ids: list[int]) -> tuple[str, list]:
    """Return ``column`` IN ids (primary keys) as SQL and its parameters."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s::bigint[])", [id_array(ids)]
    return in_values(column, ids)


# Datetimes and dataclasses are refused as ``json`` refuses them, not written as orjson would.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_text(value) -> str:
    """Return ``value`` as compact JSON text, as ``json.dumps`` writes it, at a tenth of
    its cost (orjson). What orjson refuses (an integer beyond 64 bits, a key that is not a
    string, a datetime) goes to ``json``, which writes it or raises as before. Where they
    differ: a float that is not a number becomes null, which PostgreSQL takes (``json``
    writes ``NaN``, which it refuses); a UUID and a plain enum member are written as their
    text and value (``json`` refuses them)."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def id_array(ids) -> str:
    """Return integers as one PostgreSQL array literal (``'{1,2,3}'``), a parameter the
    driver quotes as one string instead of adapting element by element."""
    return "{" + ",".join(str(int(pk)) for pk in ids) + "}"


# --- one-statement reads and writes for hot paths ---------------------------------------
#
# The ORM spends about half a millisecond of CPU building each statement; on the paths
# every API call takes (finding a workspace or a person, writing an event or an activity
# row) that is most of the request. These helpers run fixed statement texts instead, and
# still read and write every value the way the model's fields do.


MAX_PLANS = 500


def _plan(conn, key: tuple, build):
    """Return what ``build(conn)`` makes for ``key``, made once per database connection.

    Statement texts and value converters depend only on the model, the statement's shape
    and the database, so each connection keeps the ones it has built.
    """
    plans = conn.__dict__.setdefault("_engage_sql_plans", {})
    try:
        return plans[key]
    except KeyError:
        if len(plans) >= MAX_PLANS:
            plans.clear()  # SQLite's IN lists vary in length: keep the cache bounded
        plans[key] = found = build(conn)
        return found


def select_models(model, where: str, params: list, *, lock: bool | str = False,
                  limit: int | None = None) -> list:
    """Return the ``model`` instances ``WHERE where`` selects, as the ORM would build them.

    ``lock`` takes a row lock where the database has them: ``FOR UPDATE`` when true, or
    the locking clause it names (``"FOR KEY SHARE"``).
    """
    conn = connections[DEFAULT_DB_ALIAS]
    sql, names, converters = _plan(conn, ("select", model, where, lock, limit),
                                   lambda c: _select_plan(c, model, where, lock, limit))
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if converters:
        rows = [list(row) for row in rows]
        for values in rows:
            for index, expression, functions in converters:
                for function in functions:
                    values[index] = function(values[index], expression, conn)
    if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
        return [model.from_db(conn.alias, names, values) for values in rows]
    return [_loaded(model, conn.alias, names, values) for values in rows]


def _loaded(model, alias: str, names: list[str], values) -> Any:
    """Return the instance ``model.from_db`` would, without ``Model.__init__``: every
    concrete field's value set as it is (what ``__init__`` does for positional values,
    at a third of the cost), marked loaded from ``alias``."""
    instance = model.__new__(model)
    instance.__dict__.update(zip(names, values, strict=True))
    instance._state = state = ModelState()
    state.adding, state.db = False, alias
    return instance


def _select_plan(conn, model, where, lock, limit):
    fields = list(model._meta.concrete_fields)
    quote = conn.ops.quote_name
    columns, converters = [], []
    for index, field in enumerate(fields):
        expression = field.get_col(model._meta.db_table)
        functions = [*conn.ops.get_db_converters(expression), *field.get_db_converters(conn)]
        if field.get_internal_type() == "JSONField" and field.decoder is None \
                and functions == [field.from_db_value]:
            functions = [_json_from_text]  # the same values, without the ORM's detour
        if conn.vendor == "postgresql" and field.get_internal_type() == "DateTimeField":
            # Read as ISO 8601 text and parsed by ``datetime.fromisoformat`` (C), a fifth
            # of the cost of the driver's loader, to the same aware datetime (the
            # session's time zone is UTC: Django sets it).
            columns.append(f"{quote(field.column)}::text")
            functions.insert(0, _datetime_from_text)
        else:
            columns.append(quote(field.column))
        if functions:
            converters.append((index, expression, functions))
    sql = f"SELECT {', '.join(columns)} FROM {quote(model._meta.db_table)} WHERE {where}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    if lock and conn.features.has_select_for_update:
        sql += " FOR UPDATE" if lock is True else f" {lock}"
    return sql, [f.attname for f in fields], converters


_decode_json = json.JSONDecoder().decode


def _json_from_text(value, expression, conn):
    """``JSONField.from_db_value`` for a column read whole: the same value (the text
    itself when it is not JSON); an empty object, the commonest, without parsing."""
    if value is None:
        return None
    if value == "{}":
        return {}
    try:
        return _decode_json(value)
    except json.JSONDecodeError:
        return value


def _datetime_from_text(value, expression, conn):
    return None if value is None else datetime.fromisoformat(value)


def insert_rows(model, names: list[str], rows: list[tuple], *, returning: tuple[str, ...] = (),
                skip_conflicts_on: str = "") -> list[tuple]:
    """Insert ``rows`` (values of the fields ``names``, in order) in one statement.

    The rows travel as one JSON parameter that the database unpacks, so the statement's
    text is the same for any number of rows and no value is quoted one by one in Python.
    ``skip_conflicts_on`` names a unique index (its columns, and its WHERE if partial) whose
    conflicting rows are skipped; a conflict on any other still raises.
    Return the ``returning`` columns of the rows written, in no particular order.
    """
    if not rows:
        return []
    conn = connections[DEFAULT_DB_ALIAS]
    sql, prepare = _plan(conn, ("insert", model, tuple(names), returning, skip_conflicts_on),
                         lambda c: _insert_plan(c, model, names, returning, skip_conflicts_on))
    with conn.cursor() as cursor:
        cursor.execute(sql, [_rows_json(prepare, rows)])
        return cursor.fetchall() if returning else []


def _insert_plan(conn, model, names, returning, skip_conflicts_on):
    fields = [model._meta.get_field(name) for name in names]
    values, source = _row_source(conn, fields)
    quote = conn.ops.quote_name
    sql = (f"INSERT INTO {quote(model._meta.db_table)} "
           f"({', '.join(quote(f.column) for f in fields)}) "
           f"SELECT {', '.join(values)} FROM {source}")
    if conn.vendor != "postgresql":
        # SQLite reads an ON CONFLICT right after FROM as part of a join: WHERE ends it.
        sql += " WHERE true"
    sql += " ORDER BY n"
    if skip_conflicts_on:
        sql += f" ON CONFLICT {skip_conflicts_on} DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(model._meta.get_field(r).column) for r in returning)}"
    return sql, [_json_ready(conn, field) for field in fields]


def update_rows(model, names: list[str], rows: list[tuple]) -> None:
    """Set the fields ``names`` of many rows in one statement.

    Each row is the primary key followed by the values of ``names``, in order.
    """
    if not rows:
        return
    conn = connections[DEFAULT_DB_ALIAS]
    sql, prepare = _plan(conn, ("update", model, tuple(names)),
                         lambda c: _update_plan(c, model, names))
    with conn.cursor() as cursor:
        cursor.execute(sql, [_rows_json(prepare, rows)])


def _update_plan(conn, model, names):
    fields = [model._meta.pk, *(model._meta.get_field(name) for name in names)]
    values, source = _row_source(conn, fields)
    quote = conn.ops.quote_name
    table = quote(model._meta.db_table)
    assignments = ", ".join(f"{quote(field.column)} = {value}"
                            for field, value in zip(fields[1:], values[1:], strict=True))
    sql = (f"UPDATE {table} SET {assignments} FROM {source} "
           f"WHERE {table}.{quote(model._meta.pk.column)} = {values[0]}")
    return sql, [_json_ready(conn, field) for field in fields]


def _row_source(conn, fields) -> tuple[list[str], str]:
    """Return, per field, the SQL reading its value from a row of the JSON parameter, and
    the FROM clause that unpacks that parameter into rows (``n``: their order)."""
    if conn.vendor == "postgresql":
        values = []
        for i, field in enumerate(fields):
            if field.get_internal_type() == "JSONField":
                # None is SQL NULL, as the ORM writes it (refused where the column is NOT NULL).
                values.append(f"NULLIF(r->{i}, 'null'::jsonb)")
            else:
                values.append(f"(r->>{i})::{_cast_type(conn, field)}")
        return values, "jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS x(r, n)"
    values = [f"json_extract(x.value, '$[{i}]')" for i in range(len(fields))]
    return values, "(SELECT value, key AS n FROM json_each(%s)) AS x"


def _cast_type(conn, field) -> str:
    """The type a value is cast to on its way into ``field``'s column.

    Text keeps no length: an explicit cast to ``varchar(n)`` would cut a long value short
    without a word, while the column's own (assignment) cast refuses it, as an ORM write
    would.
    """
    db_type = field.db_type(conn)
    return "text" if db_type.startswith("varchar") else db_type


def _rows_json(prepare, rows) -> str:
    if any(len(row) != len(prepare) for row in rows):
        raise ValueError(f"each row must have {len(prepare)} values")
    if any(prepare):
        rows = [[to_json(value) if to_json else value
                 for to_json, value in zip(prepare, row, strict=True)] for row in rows]
    return json_text(rows)


def _json_ready(conn, field):
    """Return how a value of ``field`` is written into the rows' JSON (None: as it is)."""
    kind = field.get_internal_type()
    if kind == "DateTimeField":
        if conn.vendor == "postgresql":
            return lambda value: None if value is None else value.isoformat()
        return conn.ops.adapt_datetimefield_value
    if kind == "JSONField":
        if conn.vendor != "postgresql":
            # SQLite keeps JSON as text: the text goes in as a string.
            return lambda value: None if value is None else json.dumps(value, cls=field.encoder)
        if field.encoder is not None:
            # The field's own encoder decides what its values become, as in an ORM write.
            return lambda value: (None if value is None
                                  else json.loads(json.dumps(value, cls=field.encoder)))
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
