"""The segment builder's rows: a condition tree as indexed form fields, and back.

Every condition of a tree is one row of the builder, posted as fields named
``n-<id>-<part>`` (``n-3-kind``, ``n-3-parent``, ``n-3-field``, ``n-3-operator``,
``n-3-value``...). The server rebuilds the tree from them, validates it with
``segments.conditions`` and renders the rows again, so the tree stays the single source of
truth and the browser keeps no state of its own.

Rows and the contract's nodes:

* a group row (``and``, ``or``, ``not``) holds rows; a ``not`` group of one row is
  ``{"not": row}``, of several ``{"not": {"or": rows}}`` ("none of these");
* every other row edits one node kind, as that kind's ``RowKind`` says (its form's fields
  are the row's parts, its template their inputs): ``attribute``, ``event`` (whose
  ``filter`` rows are the event's ``filters``), ``segment`` (``{"not": {"segment": ...}}``
  when it says "is not in"), and any kind another app registers with a row.
"""

import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from django import forms
from django.utils.module_loading import import_string

from segments import conditions
from segments.models import Segment

GROUP_KINDS = ("and", "or", "not")

ATTRIBUTE_OPERATOR_CHOICES = [
    ("eq", "equals"),
    ("neq", "does not equal"),
    ("contains", "contains"),
    ("not_contains", "does not contain"),
    ("starts_with", "starts with"),
    ("in", "is one of"),
    ("gt", "is greater than"),
    ("gte", "is at least"),
    ("lt", "is less than"),
    ("lte", "is at most"),
    ("exists", "exists"),
    ("not_exists", "does not exist"),
    ("is_timestamp", "is a timestamp"),
    ("timestamp_before", "is a time before"),
    ("timestamp_after", "is a time after"),
]
COUNT_OPERATOR_CHOICES = [
    ("gte", "at least"),
    ("gt", "more than"),
    ("eq", "exactly"),
    ("neq", "not exactly"),
    ("lte", "at most"),
    ("lt", "fewer than"),
]
TIMESTAMP_UNIT_CHOICES = [
    ("days_ago", "days ago"),
    ("days_from_now", "days from now"),
    ("unix", "unix seconds"),
]
GROUP_CHOICES = [
    ("and", "All of these (AND)"),
    ("or", "Any of these (OR)"),
    ("not", "None of these (NOT)"),
]
DEFAULT_COUNT = {"operator": "gte", "value": 1}
# Deeper rows than the validator accepts are still shown (with its message), but no deeper.
MAX_ROW_DEPTH = conditions.MAX_DEPTH + 1
_KIND_KEY = re.compile(r"^n-(\d{1,9})-kind$")


@dataclass(frozen=True)
class RowKind:
    """How the builder shows and reads the row of one node kind.

    ``form``'s fields are the row's parts, posted as ``n-<id>-<field>`` (their ``initial``
    is what a new row holds); ``template`` renders their inputs (a template name, or a
    template), with the row as ``row`` (``row.values``, and ``row.form`` showing them);
    ``to_node(row, here)`` makes the node from the row's values (``here`` is
    where the node sits, to place child rows); ``from_node(body)`` gives the values of a
    node's row and those of its child rows. A kind whose rows hold rows (an event's
    filters) names their kind in ``child_kind``; ``negation`` is the (part, value) that
    makes a row say ``{"not": node}``.
    """

    label: str
    template: Any
    form: type[forms.Form]
    to_node: Callable[["Row", str], dict]
    from_node: Callable[[Any], tuple[dict[str, str], list[dict[str, str]]]]
    child_kind: str | None = None
    child_label: str = ""
    negation: tuple[str, str] | None = None

    def defaults(self) -> dict[str, str]:
        return {name: "" if field.initial is None else str(field.initial)
                for name, field in self.form.base_fields.items()}

    def read(self, row_id: int, data) -> dict[str, str]:
        """Return the row's values as posted (missing parts keep their initial value)."""
        return {name: str(data.get(f"n-{row_id}-{name}", default))
                for name, default in self.defaults().items()}


@cache
def _imported(path: str) -> RowKind:
    return import_string(path)


def row_kinds() -> dict[str, RowKind]:
    """Return the row of every registered node kind that has one (in registration order)."""
    return {kind.key: _imported(kind.row) if isinstance(kind.row, str) else kind.row
            for kind in conditions.node_kinds() if kind.row is not None}


def _row_kind(kind: str) -> RowKind | None:
    if kind == "filter":
        return FILTER_ROW
    return row_kinds().get(kind)


@dataclass(eq=False)
class Row:
    """One condition of the builder, with its inputs as the person typed them."""

    id: int
    kind: str
    parent_id: int | None = None
    values: dict[str, str] = dataclasses.field(default_factory=dict)
    children: list["Row"] = dataclasses.field(default_factory=list)
    # Where the row's node sits in the tree, in the validator's notation ("and[0].not").
    path: str = ""
    problems: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def new(cls, row_id: int, kind: str, **kwargs) -> "Row":
        """Return a row holding its kind's initial values."""
        row_kind = _row_kind(kind)
        return cls(row_id, kind, values=row_kind.defaults() if row_kind else {}, **kwargs)

    @property
    def is_group(self) -> bool:
        return self.kind in GROUP_KINDS

    @property
    def row_kind(self) -> RowKind | None:
        return _row_kind(self.kind)

    @property
    def form(self) -> forms.Form | None:
        """Return the row's form, showing its values under its ``n-<id>`` names."""
        row_kind = self.row_kind
        return row_kind.form(initial=self.values, prefix=f"n-{self.id}") if row_kind else None

    @property
    def value_widget(self) -> str:
        """Return which value input the row's operator takes (attribute and filter rows)."""
        return _value_widget(self.values.get("operator", "eq"))

    def walk(self) -> Iterator["Row"]:
        yield self
        for child in self.children:
            yield from child.walk()

    def holds(self, child: "Row") -> bool:
        """Tell whether a row of ``child``'s kind may sit in this row."""
        if self.is_group:
            return child.is_group or child.kind in row_kinds()
        row_kind = self.row_kind
        return row_kind is not None and child.kind == row_kind.child_kind


class Builder:
    """The rows of one condition tree, rooted in a group."""

    def __init__(self, root: Row):
        self.root = root

    # -- reading -----------------------------------------------------------------------

    @classmethod
    def empty(cls) -> "Builder":
        return cls(Row(0, "and"))

    @classmethod
    def from_tree(cls, tree: dict | None) -> "Builder":
        """Lay out a (valid) condition tree as rows."""
        builder = cls.empty()
        if not tree:
            return builder
        counter = iter(range(1, 10**9))
        ((kind, body),) = tree.items()
        if kind in ("and", "or"):
            builder.root.kind = kind
            builder.root.children = [_row_from_node(child, counter) for child in body]
        elif kind == "not":
            builder.root.kind = "not"
            builder.root.children = _rows_under_not(body, counter)
        else:
            builder.root.children = [_row_from_node(tree, counter)]
        builder.renumber()
        return builder

    @classmethod
    def from_post(cls, data) -> "Builder":
        """Rebuild the rows from posted ``n-<id>-...`` fields (unknown rows are dropped)."""
        rows: dict[int, Row] = {}
        for key in data:
            match = _KIND_KEY.match(key)
            if not match or not _known_row(data.get(key)):
                continue
            row_id = int(match.group(1))
            rows[row_id] = _row_from_fields(row_id, data)
        root = next((row for row_id, row in sorted(rows.items())
                     if row.parent_id is None and row.is_group), None)
        if root is None:
            return cls.empty()
        children: dict[int, list[Row]] = {}
        for _, row in sorted(rows.items()):
            if row.parent_id is not None and row.parent_id in rows:
                children.setdefault(row.parent_id, []).append(row)

        def attach(row: Row, depth: int):
            for child in children.get(row.id, []):
                if row.holds(child) and depth < MAX_ROW_DEPTH:
                    row.children.append(child)
                    attach(child, depth + 1)

        attach(root, 1)
        return cls(root)

    # -- changing ----------------------------------------------------------------------

    def rows(self) -> list[Row]:
        return list(self.root.walk())

    def find(self, row_id: int) -> Row | None:
        return next((row for row in self.root.walk() if row.id == row_id), None)

    def apply(self, op: str) -> Row | None:
        """Apply ``add:<kind>:<parent id>`` or ``remove:<id>``; return the row to fill in."""
        action, _, rest = op.partition(":")
        if action == "add":
            kind, _, parent = rest.partition(":")
            target = self.find(int(parent)) if parent.isdigit() else None
            if target is None or not _known_row(kind):
                return None
            new = Row.new(self._next_id(), kind, parent_id=target.id)
            if not target.holds(new):
                return None
            target.children.append(new)
            if new.is_group:
                first = Row.new(self._next_id(), "attribute", parent_id=new.id)
                new.children.append(first)
                return first
            return new
        if action == "remove" and rest.isdigit():
            for row in self.root.walk():
                row.children = [child for child in row.children if child.id != int(rest)]
        return None

    def _next_id(self) -> int:
        return max(row.id for row in self.root.walk()) + 1

    def renumber(self) -> None:
        """Number the rows 0, 1, 2... in the order they are shown."""
        for number, row in enumerate(self.root.walk()):
            row.id = number
        for row in self.root.walk():
            for child in row.children:
                child.parent_id = row.id
        self.root.parent_id = None

    # -- writing -----------------------------------------------------------------------

    def tree(self) -> dict | None:
        """Return the condition tree of the rows (None while the builder is empty).

        Every row learns its ``path`` in the tree, so that problems can be placed beside it.
        """
        if not self.root.children:
            self.root.path = ""
            return None
        return _node(self.root, "")

    def place(self, problems: list[tuple[str, str]]) -> None:
        """Put each of the validator's (where, message) problems on the row it names."""
        rows = self.rows()
        for where, message in problems:
            row = self.root if where == "(root)" else max(
                (row for row in rows if _within(where, row.path)),
                key=lambda row: len(row.path), default=self.root)
            if row.is_group and "needs a non-empty list" in message:
                message = "Add a condition to this group."
            if message not in row.problems:
                row.problems.append(message)

    def names_a_row(self, where: str) -> bool:
        """Tell whether a problem's place is a row below the root."""
        return any(_within(where, row.path) for row in self.root.walk() if row is not self.root)

    @property
    def problem_count(self) -> int:
        return sum(len(row.problems) for row in self.root.walk())


def _known_row(kind) -> bool:
    return kind in GROUP_KINDS or _row_kind(kind) is not None


def _within(where: str, path: str) -> bool:
    if not path:
        return True
    return where == path or where.startswith(path + ".") or where.startswith(path + "[")


def _join(path: str, kind: str) -> str:
    return f"{path}.{kind}" if path else kind


def _node(row: Row, path: str) -> dict:
    row.path = path
    if row.kind in ("and", "or"):
        here = _join(path, row.kind)
        return {row.kind: [_node(child, f"{here}[{index}]")
                           for index, child in enumerate(row.children)]}
    if row.kind == "not":
        here = _join(path, "not")
        if len(row.children) == 1:
            return {"not": _node(row.children[0], here)}
        inner = _join(here, "or")
        return {"not": {"or": [_node(child, f"{inner}[{index}]")
                               for index, child in enumerate(row.children)]}}
    return row.row_kind.to_node(row, path)


def _value_widget(operator: str) -> str:
    if operator in conditions.PRESENCE_OPERATORS or operator == "is_timestamp":
        return "none"
    if operator == "in":
        return "list"
    if operator in conditions.NUMBER_OPERATORS:
        return "number"
    if operator in conditions.TIMESTAMP_OPERATORS:
        return "timestamp"
    return "text"


def _number(text: str):
    """Read a typed number (int when whole); leave anything else as typed for the validator."""
    text = (text or "").strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if number == number and abs(number) != float("inf") else text


def _shown(value) -> str:
    """Return how a tree's value is shown in its input."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float | str):
        return conditions.text_form(value)
    import json

    return json.dumps(value)


def _row_from_node(node: dict, counter) -> Row:
    ((kind, body),) = node.items()
    if kind in ("and", "or"):
        return Row(next(counter), kind,
                   children=[_row_from_node(child, counter) for child in body])
    if kind == "not":
        if isinstance(body, dict) and len(body) == 1:
            ((inner, inner_body),) = body.items()
            row_kind = _row_kind(inner)
            if row_kind is not None and row_kind.negation is not None:
                row = _leaf_row(next(counter), inner, row_kind, inner_body, counter)
                part, value = row_kind.negation
                row.values[part] = value
                return row
        return Row(next(counter), "not", children=_rows_under_not(body, counter))
    row_kind = _row_kind(kind)
    if row_kind is None:  # a kind the builder cannot edit
        kind, row_kind = "attribute", ATTRIBUTE_ROW
    return _leaf_row(next(counter), kind, row_kind, body, counter)


def _leaf_row(row_id: int, kind: str, row_kind: RowKind, body, counter) -> Row:
    values, children = row_kind.from_node(body)
    row = Row(row_id, kind, values={**row_kind.defaults(), **values})
    child_kind = _row_kind(row_kind.child_kind) if row_kind.child_kind else None
    for child_values in children:
        row.children.append(Row(next(counter), row_kind.child_kind,
                                values={**child_kind.defaults(), **child_values}))
    return row


def _rows_under_not(body: dict, counter) -> list[Row]:
    if isinstance(body, dict) and list(body) == ["or"]:
        return [_row_from_node(child, counter) for child in body["or"]]
    return [_row_from_node(body, counter)]


def _row_from_fields(row_id: int, data) -> Row:
    kind = str(data.get(f"n-{row_id}-kind"))
    parent = str(data.get(f"n-{row_id}-parent", "")).strip()
    row_kind = _row_kind(kind)
    return Row(row_id, kind, parent_id=int(parent) if parent.isdigit() else None,
               values=row_kind.read(row_id, data) if row_kind else {})


# --- the built-in rows -------------------------------------------------------------------


class AttributeRowForm(forms.Form):
    """An attribute condition, or a filter on an event's data."""

    field = forms.CharField(required=False)
    operator = forms.ChoiceField(choices=ATTRIBUTE_OPERATOR_CHOICES, initial="eq",
                                 required=False)
    value = forms.CharField(required=False)
    unit = forms.ChoiceField(choices=TIMESTAMP_UNIT_CHOICES, initial="days_ago",
                             required=False)


def _condition(values: dict[str, str]) -> dict:
    """Return an attribute or event-data condition from a row's values."""
    body: dict = {"field": values["field"].strip(), "operator": values["operator"]}
    widget = _value_widget(values["operator"])
    value = values["value"]
    if widget == "list":
        body["value"] = [line.strip() for line in value.splitlines() if line.strip()]
    elif widget == "number":
        body["value"] = _number(value)
    elif widget == "timestamp":
        unit = values["unit"]
        number = _number(value)
        body["value"] = number if unit == "unix" else {
            unit if unit == "days_from_now" else "days_ago": number}
    elif widget == "text":
        body["value"] = value
    return body


def _condition_values(body: dict) -> dict[str, str]:
    """Return a row's values from an attribute or event-data condition."""
    values = {"field": body.get("field", ""), "operator": body.get("operator", "eq")}
    widget = _value_widget(values["operator"])
    value = body.get("value")
    if widget == "list" and isinstance(value, list):
        values["value"] = "\n".join(_shown(item) for item in value)
    elif widget == "timestamp" and isinstance(value, dict) and len(value) == 1:
        ((unit, days),) = value.items()
        values["unit"], values["value"] = unit, _shown(days)
    elif widget == "timestamp":
        values["unit"], values["value"] = "unix", _shown(value)
    else:
        values["value"] = _shown(value)
    return values


ATTRIBUTE_ROW = RowKind(
    label="Attribute", template="segments/rows/attribute.html", form=AttributeRowForm,
    to_node=lambda row, path: {"attribute": _condition(row.values)},
    from_node=lambda body: (_condition_values(body), []),
)
FILTER_ROW = dataclasses.replace(
    ATTRIBUTE_ROW, label="Filter on event data",
    to_node=lambda row, path: _condition(row.values),
)


class EventRowForm(forms.Form):
    name = forms.CharField(required=False)
    count_operator = forms.ChoiceField(choices=COUNT_OPERATOR_CHOICES, initial="gte",
                                       required=False)
    count_value = forms.CharField(initial="1", required=False)
    within_days = forms.CharField(required=False)


def _event_node(row: Row, path: str) -> dict:
    here = _join(path, "event")
    values = row.values
    body: dict = {"name": values["name"].strip()}
    count = {"operator": values["count_operator"], "value": _number(values["count_value"])}
    if count != DEFAULT_COUNT:
        body["count"] = count
    if values["within_days"].strip():
        body["within_days"] = _number(values["within_days"])
    if row.children:
        body["filters"] = []
        for index, child in enumerate(row.children):
            child.path = f"{here}.filters[{index}]"
            body["filters"].append(_condition(child.values))
    return {"event": body}


def _event_values(body: dict) -> tuple[dict[str, str], list[dict[str, str]]]:
    count = body.get("count") or DEFAULT_COUNT
    values = {"name": body.get("name", ""), "count_operator": count.get("operator", "gte"),
              "count_value": _shown(count.get("value")),
              "within_days": _shown(body.get("within_days"))}
    return values, [_condition_values(condition) for condition in body.get("filters") or []]


EVENT_ROW = RowKind(
    label="Event", template="segments/rows/event.html", form=EventRowForm,
    to_node=_event_node, from_node=_event_values,
    child_kind="filter", child_label="Filter on event data",
)


class SegmentRowForm(forms.Form):
    membership = forms.ChoiceField(choices=[("in", "is in"), ("not_in", "is not in")],
                                   initial="in", required=False)
    segment = forms.CharField(required=False)


def _segment_node(row: Row, path: str) -> dict:
    text = row.values["segment"].strip()
    node = {"segment": {"id": int(text) if text.isdigit() else text or None}}
    return {"not": node} if row.values["membership"] == "not_in" else node


SEGMENT_ROW = RowKind(
    label="Segment", template="segments/rows/segment.html", form=SegmentRowForm,
    to_node=_segment_node,
    from_node=lambda body: ({"segment": _shown(body.get("id"))}, []),
    negation=("membership", "not_in"),
)


class SegmentForm(forms.Form):
    """A segment's name and description, and (when creating one) its kind."""

    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    kind = forms.ChoiceField(
        choices=[(Segment.Kind.DATA_DRIVEN, "Data-driven: people who match conditions"),
                 (Segment.Kind.MANUAL, "Manual: people added by hand or through the API")],
        widget=forms.RadioSelect, initial=Segment.Kind.DATA_DRIVEN)

    def __init__(self, *args, creating: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if not creating:
            del self.fields["kind"]
