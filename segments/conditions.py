"""Segment condition trees: validate them, and compile them to one SQL condition.

The tree is the contract in DESIGN.md, spoken by the App API and the segment builder.
A compiled tree is a boolean SQL expression over the row ``people_person`` that runs in
the database (PostgreSQL or SQLite), never in Python, so a segment of a million people
is one query.

Each kind of node (``and``, ``attribute``, ``event``...) is a ``NodeKind`` in a registry:
its validation, its SQL in each form the compiler has, what it depends on, and the
builder row that edits it. The built-in kinds are registered below; another app adds its
own from its ``AppConfig.ready()`` with ``register(NodeKind(...))``, without this module
importing it.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection as default_connection
from django.utils import timezone

MAX_DEPTH = 12
MAX_NODES = 200
MAX_IN_VALUES = 1000
MAX_UNIX_SECONDS = 100_000_000_000
DAY = 86_400

# The node kinds of the contract (DESIGN.md), in the order problems name them.
NODE_KINDS = ("and", "or", "not", "segment", "attribute", "event", "engagement")
# Kinds of the contract that no app provides yet, and why they are refused meanwhile.
UNAVAILABLE = {
    "engagement": "engagement conditions (sent, opened, clicked...) come with campaigns and "
                  "messages, which this workspace cannot send yet",
}
TEXT_OPERATORS = {"eq", "neq", "contains", "not_contains", "starts_with", "in"}
NUMBER_OPERATORS = {"gt", "gte", "lt", "lte"}
TIMESTAMP_OPERATORS = {"is_timestamp", "timestamp_before", "timestamp_after"}
PRESENCE_OPERATORS = {"exists", "not_exists"}
ATTRIBUTE_OPERATORS = TEXT_OPERATORS | NUMBER_OPERATORS | TIMESTAMP_OPERATORS | PRESENCE_OPERATORS
COUNT_OPERATORS = {"eq", "neq", "gt", "gte", "lt", "lte"}
COUNT_SIGNS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# The comparison that holds exactly when the operator's does not.
COUNT_COMPLEMENTS = {"eq": "neq", "neq": "eq", "gt": "lte", "gte": "lt", "lt": "gte",
                     "lte": "gt"}
NEGATIONS = {"neq": "eq", "not_contains": "contains", "not_exists": "exists"}
# Fields read from the person's columns rather than their attributes.
COLUMN_FIELDS = {"id": "customer_id", "cio_id": "cio_id", "unsubscribed": "unsubscribed"}
# A string "holds a number" when it matches this (the Python evaluation uses the same).
NUMERIC_TEXT = r"^\s*[-+]?[0-9]+(\.[0-9]+)?\s*$"
_KEY = re.compile(r'[^.\[\]"\\\x00]+')


class ConditionError(Exception):
    """A tree that cannot be used, with every problem and where in the tree it is."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{where}: {message}" if where else message
                                   for where, message in problems))


# --- JSON paths ------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    kind: str  # "key", "index" or "any"
    value: Any = None


def parse_path(path: Any) -> list[Step]:
    """Parse ``a.b``, ``items[]``, ``items[0]``, ``items[].price`` into steps."""
    if not isinstance(path, str) or not path:
        raise ValueError("field must be a non-empty string")
    steps = []
    for part in path.split("."):
        match = _KEY.match(part)
        if not match:
            raise ValueError(f"'{path}' is not a valid field path")
        steps.append(Step("key", match.group()))
        rest = part[match.end():]
        while rest:
            bracket = re.match(r"\[(\d*)\]", rest)
            if not bracket:
                raise ValueError(f"'{path}' is not a valid field path")
            steps.append(Step("index", int(bracket.group(1))) if bracket.group(1)
                         else Step("any"))
            rest = rest[bracket.end():]
    return steps


# --- node kinds ------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeKind:
    """One kind of node of the tree (``{"<key>": body}``), as every part of engage uses it.

    * ``validate(validator, body, here)`` reports problems with ``validator.fail(where,
      message)``, naming places below ``here``; a kind that holds nodes checks them with
      ``validator.node(child, where)``.
    * ``depends(body)`` returns what a valid body depends on (an ``Analysis``): the
      segments it references (refused when they lead back to the segment, and evaluated
      before it), whether it changes with time, the events it reads.
    * ``set_wide(compiler, body)`` returns the body's SQL condition over the compiler's
      person row in the set-wide form (full recomputes, previews, searches, exports);
      ``correlated(compiler, body)`` in the correlated form (re-evaluating a few people)
      when it differs. Both must select the same people.
    * ``row`` is the builder row that edits it: a ``segments.builder_forms.RowKind``, or
      the dotted path of one; without a row the builder cannot add the kind.
    """

    key: str
    validate: Callable[["Validator", Any, str], None]
    set_wide: Callable[["Compiler", Any], str]
    correlated: Callable[["Compiler", Any], str] | None = None
    depends: Callable[[Any], "Analysis"] | None = None
    row: Any = None


_KINDS: dict[str, NodeKind] = {}
# The compile function of every kind, per form (correlated or not), for the compiler.
_FORMS: dict[bool, dict[str, Callable]] = {False: {}, True: {}}


def register(kind: NodeKind) -> NodeKind:
    """Make a node kind part of the contract, for the validator, compiler and builder."""
    # "filter" names the builder's rows of an event's data filters.
    if not re.fullmatch(r"[a-z][a-z0-9_]*", kind.key) or kind.key == "filter":
        raise ValueError(f"'{kind.key}' cannot name a node kind")
    if _KINDS.get(kind.key, kind) != kind:
        raise ValueError(f"the node kind '{kind.key}' is registered already")
    _KINDS[kind.key] = kind
    _FORMS[False][kind.key] = kind.set_wide
    _FORMS[True][kind.key] = kind.correlated or kind.set_wide
    return kind


def unregister(key: str) -> None:
    """Take a node kind out of the contract again (trees using it become invalid)."""
    _KINDS.pop(key, None)
    _FORMS[False].pop(key, None)
    _FORMS[True].pop(key, None)


def node_kinds() -> list[NodeKind]:
    """Return the registered node kinds, in the order they were registered."""
    return list(_KINDS.values())


def node_kind(key: str) -> NodeKind | None:
    return _KINDS.get(key)


def kind_names() -> list[str]:
    """Return the names of the contract's node kinds, then those other apps added."""
    return [*NODE_KINDS, *(key for key in _KINDS if key not in NODE_KINDS)]


# --- validation ------------------------------------------------------------------------


@dataclass
class Analysis:
    """What a valid tree depends on."""

    segment_ids: set[int] = field(default_factory=set)
    time_relative: bool = False
    event_names: set[str] = field(default_factory=set)


def validate(tree: Any, *, workspace, segment_id: int | None = None) -> Analysis:
    """Check a tree against the contract; raise ConditionError naming every problem.

    ``segment_id`` is the segment the tree belongs to, so that references that lead back
    to it (cycles) are refused.
    """
    validator = Validator()
    validator.node(tree, "")
    if not validator.problems:
        validator.check_segments(workspace, segment_id)
    if validator.problems:
        raise ConditionError(validator.problems)
    return validator.analysis


class Validator:
    """Walk a tree, collecting its problems and what it depends on.

    A node kind's ``validate(validator, body, here)`` reports with ``fail`` and checks
    the nodes it holds with ``node``.
    """

    def __init__(self):
        self.problems: list[tuple[str, str]] = []
        self.analysis = Analysis()
        self.nodes = 0
        self.depth = 0
        self.segment_places: dict[int, str] = {}

    def fail(self, where: str, message: str):
        self.problems.append((where or "(root)", message))

    def node(self, node: Any, where: str):
        """Check a node found at ``where`` (one level below the node checking it)."""
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if self.nodes == MAX_NODES + 1:
                self.fail(where, f"a tree may have at most {MAX_NODES} conditions")
            return
        if self.depth >= MAX_DEPTH:
            self.fail(where, f"conditions may be nested at most {MAX_DEPTH} deep")
            return
        if not isinstance(node, dict) or len(node) != 1:
            self.fail(where, "a condition must be an object with exactly one of: "
                             + ", ".join(kind_names()))
            return
        ((key, body),) = node.items()
        here = f"{where}.{key}" if where else key
        kind = _KINDS.get(key)
        if kind is None:
            if key in UNAVAILABLE:
                self.fail(here, UNAVAILABLE[key])
            else:
                self.fail(where, f"unknown condition '{key}': use one of "
                                 + ", ".join(kind_names()))
            return
        found = len(self.problems)
        self.depth += 1
        try:
            kind.validate(self, body, here)
        finally:
            self.depth -= 1
        if kind.depends is not None and len(self.problems) == found:
            self.depend(kind.depends(body), here)

    def depend(self, dependencies: Analysis, here: str):
        """Add what a valid node at ``here`` depends on to the tree's analysis."""
        self.analysis.segment_ids |= dependencies.segment_ids
        self.analysis.event_names |= dependencies.event_names
        self.analysis.time_relative |= dependencies.time_relative
        for referenced in dependencies.segment_ids:
            self.segment_places.setdefault(referenced, here)

    def attribute(self, body: Any, here: str, *, allow_columns: bool = True):
        """Check an attribute condition (also the shape of an event's data filters)."""
        if not isinstance(body, dict):
            self.fail(here, "attribute needs field, operator and value")
            return
        unknown = set(body) - {"field", "operator", "value"}
        if unknown:
            self.fail(here, f"unknown keys {sorted(unknown)}")
        try:
            steps = parse_path(body.get("field"))
        except ValueError as error:
            self.fail(f"{here}.field", str(error))
            steps = None
        operator = body.get("operator")
        if operator not in ATTRIBUTE_OPERATORS:
            self.fail(f"{here}.operator", f"unknown operator '{operator}': use one of "
                                          + ", ".join(sorted(ATTRIBUTE_OPERATORS)))
            return
        value = body.get("value")
        if operator in PRESENCE_OPERATORS or operator == "is_timestamp":
            if "value" in body and value is not None:
                self.fail(f"{here}.value", f"'{operator}' takes no value")
        elif operator == "in":
            if not isinstance(value, list) or not value or len(value) > MAX_IN_VALUES:
                self.fail(f"{here}.value", f"'in' needs a list of 1 to {MAX_IN_VALUES} values")
            elif not all(_is_scalar(item) for item in value):
                self.fail(f"{here}.value", "'in' values must be strings, numbers or booleans")
        elif operator in TEXT_OPERATORS:
            if not _is_scalar(value):
                self.fail(f"{here}.value", f"'{operator}' needs a string, number or boolean")
        elif operator in NUMBER_OPERATORS:
            if _as_number(value) is None:
                self.fail(f"{here}.value", f"'{operator}' needs a number")
        else:  # timestamp_before / timestamp_after
            if _is_relative(value):
                days = next(iter(value.values()))
                if isinstance(days, bool) or not isinstance(days, int | float) or days < 0:
                    self.fail(f"{here}.value", "days must be a number of at least 0")
            elif _as_number(value) is None:
                self.fail(f"{here}.value", f"'{operator}' needs unix seconds, "
                                           "{\"days_ago\": N} or {\"days_from_now\": N}")
        if steps and steps[0].kind == "key" and steps[0].value in COLUMN_FIELDS:
            if not allow_columns or len(steps) > 1:
                self.fail(f"{here}.field", f"'{steps[0].value}' has no nested fields")

    def check_segments(self, workspace, segment_id: int | None):
        if not self.analysis.segment_ids:
            return
        from segments.models import Segment

        known = dict(
            Segment.objects.filter(workspace=workspace, pk__in=self.analysis.segment_ids)
            .values_list("pk", "archived")
        )
        for referenced, where in self.segment_places.items():
            if referenced not in known:
                self.fail(where, f"there is no segment {referenced} in this workspace")
        if segment_id is None:
            return
        # Walk the references of the referenced segments: none may lead back here.
        seen, frontier = set(), set(self.analysis.segment_ids) & set(known)
        while frontier:
            if segment_id in frontier:
                self.fail(self.segment_places.get(segment_id, "segment"),
                          "segments cannot reference themselves, directly or through others")
                return
            seen |= frontier
            frontier = set(
                Segment.depends_on.through.objects.filter(from_segment_id__in=frontier)
                .values_list("to_segment_id", flat=True)
            ) - seen


def sql_string(text: str) -> str:
    """Quote a validated path as an SQL string literal (paths hold no backslash or NUL)."""
    return "'" + text.replace("'", "''") + "'"


def _compare_count(count: int, operator: str, number: int) -> bool:
    return {"eq": count == number, "neq": count != number, "gt": count > number,
            "gte": count >= number, "lt": count < number, "lte": count <= number}[operator]


def _is_relative(value: Any) -> bool:
    """Tell whether a timestamp value is relative to now (``{"days_ago": N}``...)."""
    return (isinstance(value, dict) and len(value) == 1
            and set(value) <= {"days_ago", "days_from_now"})


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool | int | float)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and re.match(NUMERIC_TEXT, value):
        return float(value)
    return None


def text_form(value: Any) -> str:
    """Return how a scalar compares as text: JSON text for numbers, true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value)


# --- compilation -----------------------------------------------------------------------


@dataclass
class Compiled:
    sql: str
    params: list


class _Ref:
    """A JSON value inside a row, as SQL: its type, text and number forms."""

    def type_sql(self) -> str: ...

    def text_sql(self) -> str: ...

    def number_sql(self) -> str: ...


class Compiler:
    """Compile a validated tree for one database, with "now" fixed at construction.

    Two forms of the same conditions, chosen by the caller for the rows it evaluates:

    * set-wide (``correlated=False``, the default), for many people at once (a full
      recompute, previews, searches, exports): an event count is a set of person ids,
      ``GROUP BY person_id HAVING COUNT(*) ...`` over the workspace's matching events,
      computed once, that PostgreSQL joins with a hash semi or anti join. It needs the
      workspace (``workspace_id``) to read only that workspace's events.
    * correlated (``correlated=True``), for a few given people (``evaluate_people``):
      each event condition looks up that person's events through the
      (person, name, timestamp) index and counts no further than the comparison needs.

    Both give the same answer for every person.

    A comparison with a missing value is NULL, not false: in a WHERE clause, AND and OR
    that makes no difference, so conditions are left as they are (which lets PostgreSQL
    estimate them and scan in parallel); only a NOT makes its operand strictly true or
    false, so that NOT of "missing" holds.
    """

    def __init__(self, *, now: datetime | None = None, connection=None,
                 person_table: str = "people_person", correlated: bool = False,
                 workspace_id: int | None = None):
        self.connection = connection or default_connection
        self.vendor = self.connection.vendor
        self.now = now or timezone.now()
        self.person = person_table
        self.correlated = correlated
        self.workspace_id = workspace_id
        self.params: list = []
        self._aliases = 0
        self._forms = _FORMS[correlated]

    def compile(self, tree: dict) -> Compiled:
        self.params = []
        sql = self.node(tree)
        return Compiled(sql, self.params)

    # -- helpers --

    def param(self, value) -> str:
        self.params.append(value)
        return "%s"

    def alias(self, prefix: str) -> str:
        self._aliases += 1
        return f"{prefix}{self._aliases}"

    def true(self) -> str:
        return "TRUE" if self.vendor == "postgresql" else "1"

    def strict(self, sql: str) -> str:
        """Make a possibly-NULL condition strictly true or false (under a NOT)."""
        false = "FALSE" if self.vendor == "postgresql" else "0"
        return f"COALESCE(({sql}), {false})"

    # -- nodes --

    def node(self, node: dict) -> str:
        """Return a node's SQL condition, in this compiler's form."""
        ((kind, body),) = node.items()
        compile = self._forms.get(kind)
        if compile is None:
            raise ValueError(f"cannot compile '{kind}'")
        return compile(self, body)

    def event_where(self, body: dict) -> list[str]:
        """Return the conditions an event row (``ev``) meets to count, but its person."""
        where = []
        if not self.correlated and self.workspace_id is not None:
            # Every event of a person is in the person's workspace; saying so lets the
            # set-wide forms read the workspace's events by (workspace, name, timestamp).
            where.append(f"ev.workspace_id = {self.param(self.workspace_id)}")
        where.append(f"ev.name = {self.param(body['name'])}")
        if body.get("within_days") is not None:
            since = self.now - timedelta(days=body["within_days"])
            value = self.connection.ops.adapt_datetimefield_value(since)
            where.append(f"ev.timestamp >= {self.param(value)}")
        for condition in body.get("filters") or []:
            where.append(self.attribute(condition, "ev.data", columns=False))
        return where

    def attribute(self, body: dict, json_column: str, *, columns: bool) -> str:
        operator = body["operator"]
        if operator in NEGATIONS:
            positive = {**body, "operator": NEGATIONS[operator]}
            return f"(NOT {self.strict(self.attribute(positive, json_column, columns=columns))})"
        steps = parse_path(body["field"])
        if columns and steps[0].value in COLUMN_FIELDS:
            ref = self.column_ref(COLUMN_FIELDS[steps[0].value])
            return self.compare(ref, operator, body.get("value"))
        return self.over_path(json_column, steps, operator, body.get("value"))

    def over_path(self, container: str, steps: list[Step], operator: str, value: Any) -> str:
        """Compare the value at ``steps`` inside JSON ``container``; ``[]`` means any."""
        if any(step.kind == "any" for step in steps):
            cut = next(i for i, step in enumerate(steps) if step.kind == "any")
            head, tail = steps[:cut], steps[cut + 1:]
            return self.any_element(container, head, tail, operator, value)
        return self.compare(self.json_ref(container, steps), operator, value)

    # -- vendor-specific JSON access --

    def any_element(self, container, head, tail, operator, value) -> str:
        element = self.alias("el")
        if self.vendor == "postgresql":
            array = f"({container} #> {self.pg_path(head)})" if head else container
            source = (f"jsonb_array_elements(CASE WHEN jsonb_typeof({array}) = 'array' "
                      f"THEN {array} ELSE '[]'::jsonb END) AS {element}(value)")
            inner_container = f"{element}.value"
            if tail:
                condition = self.over_path(inner_container, tail, operator, value)
            else:
                condition = self.compare(_PgRef(inner_container, None), operator, value)
            return f"EXISTS (SELECT 1 FROM {source} WHERE {self.strict(condition)})"
        path = self.sqlite_path(head)
        array_type = f"json_type({container}, {path})"
        source = f"json_each({container}, {path}) AS {element}"
        if tail:
            inner = (f"(CASE WHEN {element}.type IN ('object', 'array') "
                     f"THEN {element}.value END)")
            condition = self.over_path(inner, tail, operator, value)
        else:
            condition = self.compare(_SqliteElementRef(element), operator, value)
        # json_each is only used on arrays; the CASE keeps scalars from being read as JSON.
        return (f"({array_type} = 'array' AND EXISTS (SELECT 1 FROM {source} "
                f"WHERE {self.strict(condition)}))")

    def json_ref(self, container: str, steps: list[Step]) -> _Ref:
        if self.vendor == "postgresql":
            if len(steps) == 1 and steps[0].kind == "key":
                return _PgRef(f"({container} -> {sql_string(str(steps[0].value))})", None)
            return _PgRef(container, self.pg_path(steps))
        return _SqliteRef(container, self.sqlite_path(steps))

    def column_ref(self, column: str) -> _Ref:
        return _ColumnRef(f"{self.person}.{column}", column == "unsubscribed", self)

    @staticmethod
    def pg_path(steps: list[Step]) -> str:
        """Return the path as a PostgreSQL text[] literal."""
        return "ARRAY[" + ", ".join(sql_string(str(step.value)) for step in steps) + "]::text[]"

    @staticmethod
    def sqlite_path(steps: list[Step]) -> str:
        """Return the path as an SQLite JSON path literal."""
        path = "$"
        for step in steps:
            path += f'."{step.value}"' if step.kind == "key" else f"[{step.value}]"
        return sql_string(path)

    # -- comparisons --

    def compare(self, ref: _Ref, operator: str, value: Any) -> str:
        scalar = "('string', 'number', 'boolean')"
        if operator == "exists":
            return f"({ref.type_sql()} IS NOT NULL AND {ref.type_sql()} <> 'null')"
        if operator in ("eq", "in"):
            values = value if operator == "in" else [value]
            choices = ", ".join(self.param(text_form(item)) for item in values)
            return f"({ref.type_sql()} IN {scalar} AND {ref.text_sql()} IN ({choices}))"
        if operator == "contains":
            if self.vendor == "postgresql":
                found = f"strpos({ref.text_sql()}, {self.param(text_form(value))}) > 0"
            else:
                found = f"instr({ref.text_sql()}, {self.param(text_form(value))}) > 0"
            return f"({ref.type_sql()} IN {scalar} AND {found})"
        if operator == "starts_with":
            prefix = text_form(value)
            if self.vendor == "postgresql":
                found = f"starts_with({ref.text_sql()}, {self.param(prefix)})"
            else:
                found = (f"substr({ref.text_sql()}, 1, {self.param(len(prefix))}) = "
                         f"{self.param(prefix)}")
            return f"({ref.type_sql()} IN {scalar} AND {found})"
        number = ref.number_sql()
        if operator in NUMBER_OPERATORS:
            sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[operator]
            return f"({number} {sign} {self.param(_as_number(value))})"
        in_range = f"({number} >= 0 AND {number} < {MAX_UNIX_SECONDS})"
        if operator == "is_timestamp":
            return in_range
        threshold = self.threshold(value)
        sign = "<" if operator == "timestamp_before" else ">"
        return f"({in_range} AND {number} {sign} {self.param(threshold)})"

    def threshold(self, value: Any) -> float:
        now = self.now.timestamp()
        if isinstance(value, dict):
            if "days_ago" in value:
                return int(now - value["days_ago"] * DAY)
            return int(now + value["days_from_now"] * DAY)
        return _as_number(value)


class _PgRef(_Ref):
    def __init__(self, container: str, path: str | None):
        self.expr = container if path is None else f"({container} #> {path})"

    def type_sql(self):
        return f"jsonb_typeof({self.expr})"

    def text_sql(self):
        return f"({self.expr} #>> '{{}}')"

    def number_sql(self):
        text = self.text_sql()
        return (f"(CASE WHEN jsonb_typeof({self.expr}) = 'number' THEN {text}::numeric "
                f"WHEN jsonb_typeof({self.expr}) = 'string' AND {text} ~ '{NUMERIC_TEXT}' "
                f"THEN trim({text})::numeric END)")


_SQLITE_TYPES = ("CASE {t} WHEN 'text' THEN 'string' WHEN 'integer' THEN 'number' "
                 "WHEN 'real' THEN 'number' WHEN 'true' THEN 'boolean' "
                 "WHEN 'false' THEN 'boolean' ELSE {t} END")


class _SqliteRef(_Ref):
    def __init__(self, container: str, path: str):
        self.kind = f"json_type({container}, {path})"
        self.value = f"json_extract({container}, {path})"

    def type_sql(self):
        return _SQLITE_TYPES.format(t=self.kind)

    def text_sql(self):
        return (f"(CASE {self.kind} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
                f"ELSE CAST({self.value} AS TEXT) END)")

    def number_sql(self):
        kind, value = self.kind, self.value
        return (f"(CASE WHEN {kind} IN ('integer', 'real') THEN {value} "
                f"WHEN {kind} = 'text' AND {value} REGEXP '{NUMERIC_TEXT}' "
                f"THEN CAST(trim({value}) AS NUMERIC) END)")


class _SqliteElementRef(_Ref):
    def __init__(self, alias: str):
        self.alias = alias

    def type_sql(self):
        return _SQLITE_TYPES.format(t=f"{self.alias}.type")

    def text_sql(self):
        return (f"(CASE {self.alias}.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
                f"ELSE CAST({self.alias}.value AS TEXT) END)")

    def number_sql(self):
        value, kind = f"{self.alias}.value", f"{self.alias}.type"
        return (f"(CASE WHEN {kind} IN ('integer', 'real') THEN {value} "
                f"WHEN {kind} = 'text' AND {value} REGEXP '{NUMERIC_TEXT}' "
                f"THEN CAST(trim({value}) AS NUMERIC) END)")


class _ColumnRef(_Ref):
    def __init__(self, column: str, boolean: bool, compiler: Compiler):
        self.column = column
        self.boolean = boolean
        self.postgres = compiler.vendor == "postgresql"

    def type_sql(self):
        kind = "'boolean'" if self.boolean else "'string'"
        return f"(CASE WHEN {self.column} IS NULL THEN NULL ELSE {kind} END)"

    def text_sql(self):
        if self.boolean:
            true = f"{self.column}" if self.postgres else f"{self.column} = 1"
            return f"(CASE WHEN {true} THEN 'true' ELSE 'false' END)"
        return self.column

    def number_sql(self):
        if self.boolean:
            return "NULL"
        if self.postgres:
            return (f"(CASE WHEN {self.column} ~ '{NUMERIC_TEXT}' "
                    f"THEN trim({self.column})::numeric END)")
        return (f"(CASE WHEN {self.column} REGEXP '{NUMERIC_TEXT}' "
                f"THEN CAST(trim({self.column}) AS NUMERIC) END)")


def compile_tree(tree: dict, *, now: datetime | None = None, connection=None,
                 correlated: bool = False, workspace_id: int | None = None) -> Compiled:
    """Compile a validated tree to a SQL condition over ``people_person``.

    Set-wide by default (for many people); ``correlated=True`` for a few (see Compiler).
    """
    return Compiler(now=now, connection=connection, correlated=correlated,
                    workspace_id=workspace_id).compile(tree)


def matching_people(workspace, tree: dict, *, now: datetime | None = None,
                    correlated: bool = False):
    """Return the workspace's people that ``tree`` matches, as a QuerySet."""
    from django.db.models.expressions import RawSQL

    from people.models import Person

    compiled = compile_tree(tree, now=now, correlated=correlated, workspace_id=workspace.pk)
    subquery = RawSQL(
        "SELECT people_person.id FROM people_person WHERE people_person.workspace_id = %s "
        f"AND {compiled.sql}",
        [workspace.pk, *compiled.params],
    )
    return Person.objects.filter(workspace=workspace, pk__in=subquery)


# --- the built-in node kinds -------------------------------------------------------------


def _conditions_of(key: str) -> Callable[[Validator, Any, str], None]:
    """Return the validation of a kind whose body is a list of nodes (``and``, ``or``)."""
    def validate_list(validator: Validator, body: Any, here: str):
        if not isinstance(body, list) or not body:
            validator.fail(here, f"'{key}' needs a non-empty list of conditions")
            return
        for index, child in enumerate(body):
            validator.node(child, f"{here}[{index}]")

    return validate_list


def _compile_and(compiler: Compiler, body: list) -> str:
    return "(" + " AND ".join(compiler.node(child) for child in body) + ")"


def _compile_or(compiler: Compiler, body: list) -> str:
    return "(" + " OR ".join(compiler.node(child) for child in body) + ")"


def _validate_not(validator: Validator, body: Any, here: str):
    validator.node(body, here)


def _compile_not(compiler: Compiler, body: dict) -> str:
    return f"(NOT {compiler.strict(compiler.node(body))})"


def _validate_segment(validator: Validator, body: Any, here: str):
    segment_id = body.get("id") if isinstance(body, dict) else None
    if isinstance(segment_id, bool) or not isinstance(segment_id, int):
        validator.fail(here, "segment needs an integer id, as in {\"segment\": {\"id\": 12}}")


def _segment_depends(body: dict) -> Analysis:
    return Analysis(segment_ids={body["id"]})


def _compile_segment(compiler: Compiler, body: dict) -> str:
    return (f"EXISTS (SELECT 1 FROM segments_membership sm WHERE sm.segment_id = "
            f"{compiler.param(body['id'])} AND sm.person_id = {compiler.person}.id)")


def _validate_attribute(validator: Validator, body: Any, here: str):
    validator.attribute(body, here)


def _attribute_depends(body: dict) -> Analysis:
    return Analysis(time_relative=_is_relative(body.get("value")))


def _compile_attribute(compiler: Compiler, body: dict) -> str:
    return compiler.attribute(body, f"{compiler.person}.attributes", columns=True)


def _validate_event(validator: Validator, body: Any, here: str):
    if not isinstance(body, dict):
        validator.fail(here, "event needs a name")
        return
    unknown = set(body) - {"name", "count", "within_days", "filters"}
    if unknown:
        validator.fail(here, f"unknown keys {sorted(unknown)}")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.encode()) > 100:
        validator.fail(f"{here}.name", "event name must be a string of 1 to 100 bytes")
    count = body.get("count", {"operator": "gte", "value": 1})
    if (not isinstance(count, dict) or count.get("operator") not in COUNT_OPERATORS
            or isinstance(count.get("value"), bool)
            or not isinstance(count.get("value"), int) or count["value"] < 0
            or count["value"] > 1_000_000):
        validator.fail(f"{here}.count", "count needs an operator (eq, neq, gt, gte, lt, lte) "
                                        "and a whole number value of at least 0")
    within = body.get("within_days")
    if within is not None:
        if (isinstance(within, bool) or not isinstance(within, int | float)
                or not 0 < within <= 36_500):
            validator.fail(f"{here}.within_days",
                           "within_days must be a number above 0 and at most 36500 (100 years)")
    filters = body.get("filters", [])
    if not isinstance(filters, list):
        validator.fail(f"{here}.filters", "filters must be a list of attribute conditions")
        return
    for index, condition in enumerate(filters):
        validator.attribute(condition, f"{here}.filters[{index}]", allow_columns=False)


def _event_depends(body: dict) -> Analysis:
    relative = body.get("within_days") is not None or any(
        _is_relative(condition.get("value")) for condition in body.get("filters") or [])
    return Analysis(event_names={body["name"]}, time_relative=relative)


def _event_count(body: dict) -> tuple[str, int]:
    count = body.get("count") or {"operator": "gte", "value": 1}
    return count["operator"], count["value"]


def _compile_event_set_wide(compiler: Compiler, body: dict) -> str:
    """Read the person's count from the set of people whose count passes (or fails) it."""
    operator, number = _event_count(body)
    where = compiler.event_where(body)
    mine = f"ev.person_id = {compiler.person}.id"
    rows = f"SELECT 1 FROM people_event ev WHERE {' AND '.join([mine, *where])}"
    if (operator, number) in {("gte", 1), ("gt", 0), ("neq", 0)}:
        return f"EXISTS ({rows})"
    if (operator, number) in {("eq", 0), ("lt", 1), ("lte", 0)}:
        return f"(NOT EXISTS ({rows}))"
    # People without any such event (a count of 0) form no group: when the comparison
    # holds for 0, match those in no group whose count fails it, else those in a group
    # whose count passes it.
    holds_at_zero = _compare_count(0, operator, number)
    having = COUNT_SIGNS[COUNT_COMPLEMENTS[operator] if holds_at_zero else operator]
    grouped = compiler.alias("g")
    counted = (f"SELECT ev.person_id FROM people_event ev WHERE {' AND '.join(where)} "
               f"GROUP BY ev.person_id HAVING COUNT(*) {having} {compiler.param(number)}")
    found = (f"EXISTS (SELECT 1 FROM ({counted}) {grouped} "
             f"WHERE {grouped}.person_id = {compiler.person}.id)")
    return f"(NOT {found})" if holds_at_zero else found


def _compile_event_correlated(compiler: Compiler, body: dict) -> str:
    """Count the person's events through the (person, name, timestamp) index."""
    operator, number = _event_count(body)
    where = compiler.event_where(body)
    mine = f"ev.person_id = {compiler.person}.id"
    rows = f"SELECT 1 FROM people_event ev WHERE {' AND '.join([mine, *where])}"
    if (operator, number) in {("gte", 1), ("gt", 0), ("neq", 0)}:
        return f"EXISTS ({rows})"
    if (operator, number) in {("eq", 0), ("lt", 1), ("lte", 0)}:
        return f"(NOT EXISTS ({rows}))"
    # Count no further than the comparison needs.
    cap = number + 1
    return (f"((SELECT COUNT(*) FROM ({rows} LIMIT {int(cap)}) counted) "
            f"{COUNT_SIGNS[operator]} {compiler.param(number)})")


for _kind in (
    NodeKind("and", _conditions_of("and"), _compile_and),
    NodeKind("or", _conditions_of("or"), _compile_or),
    NodeKind("not", _validate_not, _compile_not),
    NodeKind("attribute", _validate_attribute, _compile_attribute, depends=_attribute_depends,
             row="segments.builder_forms.ATTRIBUTE_ROW"),
    NodeKind("event", _validate_event, _compile_event_set_wide,
             correlated=_compile_event_correlated, depends=_event_depends,
             row="segments.builder_forms.EVENT_ROW"),
    NodeKind("segment", _validate_segment, _compile_segment, depends=_segment_depends,
             row="segments.builder_forms.SEGMENT_ROW"),
):
    register(_kind)
