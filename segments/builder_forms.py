"""The segment builder's rows: a condition tree as indexed form fields, and back.

Every condition of a tree is one row of the builder, posted as fields named
``n-<id>-<part>`` (``n-3-kind``, ``n-3-parent``, ``n-3-field``, ``n-3-operator``,
``n-3-value``...). The server rebuilds the tree from them, validates it with
``segments.conditions`` and renders the rows again, so the tree stays the single source of
truth and the browser keeps no state of its own.

Rows and the contract's nodes:

* a group row (``and``, ``or``, ``not``) holds rows; a ``not`` group of one row is
  ``{"not": row}``, of several ``{"not": {"or": rows}}`` ("none of these");
* an ``attribute`` row is ``{"attribute": ...}``; its value input is read by operator;
* an ``event`` row is ``{"event": ...}``; its ``filter`` rows are the event's ``filters``;
* a ``segment`` row is ``{"segment": {"id": N}}``, or ``{"not": {"segment": ...}}`` when
  it says "is not in".
"""

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass

from django import forms

from segments import conditions
from segments.models import Segment

GROUP_KINDS = ("and", "or", "not")
LEAF_KINDS = ("attribute", "event", "segment")
ROW_KINDS = (*GROUP_KINDS, *LEAF_KINDS, "filter")
ADDABLE = {*ROW_KINDS}

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


@dataclass(eq=False)
class Row:
    """One condition of the builder, with its inputs as the person typed them."""

    id: int
    kind: str
    parent_id: int | None = None
    field: str = ""
    operator: str = "eq"
    value: str = ""
    unit: str = "days_ago"
    name: str = ""
    count_operator: str = "gte"
    count_value: str = "1"
    within_days: str = ""
    segment: str = ""
    negate: bool = False
    children: list["Row"] = dataclasses.field(default_factory=list)
    # Where the row's node sits in the tree, in the validator's notation ("and[0].not").
    path: str = ""
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def is_group(self) -> bool:
        return self.kind in GROUP_KINDS

    @property
    def value_widget(self) -> str:
        """Return which value input the row's operator takes."""
        operator = self.operator
        if operator in conditions.PRESENCE_OPERATORS or operator == "is_timestamp":
            return "none"
        if operator == "in":
            return "list"
        if operator in conditions.NUMBER_OPERATORS:
            return "number"
        if operator in conditions.TIMESTAMP_OPERATORS:
            return "timestamp"
        return "text"

    def walk(self) -> Iterator["Row"]:
        yield self
        for child in self.children:
            yield from child.walk()


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
            if not match or data.get(key) not in ROW_KINDS:
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
                fits = (child.kind == "filter") == (row.kind == "event")
                if fits and (row.is_group or row.kind == "event") and depth < MAX_ROW_DEPTH:
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
            if target is None or kind not in ADDABLE:
                return None
            if (kind == "filter") != (target.kind == "event") or not (
                    target.is_group or target.kind == "event"):
                return None
            new = Row(self._next_id(), kind, parent_id=target.id)
            target.children.append(new)
            if new.is_group:
                first = Row(self._next_id(), "attribute", parent_id=new.id)
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
    if row.kind == "segment":
        text = row.segment.strip()
        node = {"segment": {"id": int(text) if text.isdigit() else text or None}}
        return {"not": node} if row.negate else node
    if row.kind == "event":
        here = _join(path, "event")
        body: dict = {"name": row.name.strip()}
        count = {"operator": row.count_operator, "value": _number(row.count_value)}
        if count != DEFAULT_COUNT:
            body["count"] = count
        if row.within_days.strip():
            body["within_days"] = _number(row.within_days)
        if row.children:
            body["filters"] = []
            for index, child in enumerate(row.children):
                child.path = f"{here}.filters[{index}]"
                body["filters"].append(_condition(child))
        return {"event": body}
    return {"attribute": _condition(row)}


def _condition(row: Row) -> dict:
    """Return an attribute or event-data condition from the row's inputs."""
    body: dict = {"field": row.field.strip(), "operator": row.operator}
    widget = row.value_widget
    if widget == "list":
        body["value"] = [line.strip() for line in row.value.splitlines() if line.strip()]
    elif widget == "number":
        body["value"] = _number(row.value)
    elif widget == "timestamp":
        number = _number(row.value)
        body["value"] = number if row.unit == "unix" else {
            row.unit if row.unit == "days_from_now" else "days_ago": number}
    elif widget == "text":
        body["value"] = row.value
    return body


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
    row = Row(next(counter), kind if kind in ROW_KINDS else "attribute")
    if kind in ("and", "or"):
        row.children = [_row_from_node(child, counter) for child in body]
    elif kind == "not":
        if isinstance(body, dict) and list(body) == ["segment"]:
            row = _row_from_node(body, counter)
            row.negate = True
        else:
            row.children = _rows_under_not(body, counter)
    elif kind == "segment":
        row.segment = _shown(body.get("id"))
    elif kind == "event":
        row.name = body.get("name", "")
        count = body.get("count") or DEFAULT_COUNT
        row.count_operator = count.get("operator", "gte")
        row.count_value = _shown(count.get("value"))
        row.within_days = _shown(body.get("within_days"))
        for condition in body.get("filters") or []:
            child = Row(next(counter), "filter")
            _fill_condition(child, condition)
            row.children.append(child)
    else:
        _fill_condition(row, body)
    return row


def _rows_under_not(body: dict, counter) -> list[Row]:
    if isinstance(body, dict) and list(body) == ["or"]:
        return [_row_from_node(child, counter) for child in body["or"]]
    return [_row_from_node(body, counter)]


def _fill_condition(row: Row, body: dict) -> None:
    row.field = body.get("field", "")
    row.operator = body.get("operator", "eq")
    value = body.get("value")
    if row.value_widget == "list" and isinstance(value, list):
        row.value = "\n".join(_shown(item) for item in value)
    elif row.value_widget == "timestamp" and isinstance(value, dict) and len(value) == 1:
        ((unit, days),) = value.items()
        row.unit, row.value = unit, _shown(days)
    elif row.value_widget == "timestamp":
        row.unit, row.value = "unix", _shown(value)
    else:
        row.value = _shown(value)


def _row_from_fields(row_id: int, data) -> Row:
    def text(part: str, default: str = "") -> str:
        return str(data.get(f"n-{row_id}-{part}", default))

    parent = text("parent").strip()
    return Row(
        row_id, text("kind"),
        parent_id=int(parent) if parent.isdigit() else None,
        field=text("field"), operator=text("operator", "eq"), value=text("value"),
        unit=text("unit", "days_ago"), name=text("name"),
        count_operator=text("count_operator", "gte"), count_value=text("count_value", "1"),
        within_days=text("within_days"), segment=text("segment"),
        negate=text("membership") == "not_in",
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
