"""A plain-Python reading of the segment condition contract, to check the SQL against."""

import re
from datetime import datetime, timedelta

from segments.conditions import (
    COLUMN_FIELDS,
    DAY,
    MAX_UNIX_SECONDS,
    NEGATIONS,
    NUMERIC_TEXT,
    parse_path,
    text_form,
)


def values_at(container, steps):
    """Return every value the path reaches (``[]`` fans out); missing paths reach none."""
    values = [container]
    for step in steps:
        found = []
        for value in values:
            if step.kind == "key" and isinstance(value, dict) and step.value in value:
                found.append(value[step.value])
            elif step.kind == "index" and isinstance(value, list) and step.value < len(value):
                found.append(value[step.value])
            elif step.kind == "any" and isinstance(value, list):
                found.extend(value)
        values = found
    return values


def as_number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and re.match(NUMERIC_TEXT, value):
        return float(value.strip())
    return None


def is_scalar(value):
    return isinstance(value, str | bool | int | float)


def compare(value, operator, expected, now: datetime) -> bool:
    if operator == "exists":
        return value is not None
    if operator in ("eq", "in"):
        choices = expected if operator == "in" else [expected]
        return is_scalar(value) and text_form(value) in {text_form(c) for c in choices}
    if operator == "contains":
        return is_scalar(value) and text_form(expected) in text_form(value)
    if operator == "starts_with":
        return is_scalar(value) and text_form(value).startswith(text_form(expected))
    number = as_number(value)
    if number is None:
        return False
    if operator == "gt":
        return number > as_number(expected)
    if operator == "gte":
        return number >= as_number(expected)
    if operator == "lt":
        return number < as_number(expected)
    if operator == "lte":
        return number <= as_number(expected)
    if not 0 <= number < MAX_UNIX_SECONDS:
        return False
    if operator == "is_timestamp":
        return True
    if isinstance(expected, dict):
        if "days_ago" in expected:
            threshold = int(now.timestamp() - expected["days_ago"] * DAY)
        else:
            threshold = int(now.timestamp() + expected["days_from_now"] * DAY)
    else:
        threshold = as_number(expected)
    return number < threshold if operator == "timestamp_before" else number > threshold


def attribute_matches(condition, attributes, columns, now) -> bool:
    operator = condition["operator"]
    if operator in NEGATIONS:
        return not attribute_matches({**condition, "operator": NEGATIONS[operator]},
                                     attributes, columns, now)
    steps = parse_path(condition["field"])
    if columns is not None and steps[0].value in COLUMN_FIELDS:
        values = [columns[steps[0].value]]
    else:
        values = values_at(attributes, steps)
    return any(compare(value, operator, condition.get("value"), now) for value in values)


def matches(tree, person, now: datetime) -> bool:
    """Tell whether ``person`` (a dict: attributes, columns, events, segments) matches."""
    ((kind, body),) = tree.items()
    if kind == "and":
        return all(matches(child, person, now) for child in body)
    if kind == "or":
        return any(matches(child, person, now) for child in body)
    if kind == "not":
        return not matches(body, person, now)
    if kind == "segment":
        return body["id"] in person["segments"]
    if kind == "attribute":
        return attribute_matches(body, person["attributes"], person["columns"], now)
    count = body.get("count") or {"operator": "gte", "value": 1}
    since = now - timedelta(days=body["within_days"]) if body.get("within_days") else None
    n = sum(
        1 for name, timestamp, data in person["events"]
        if name == body["name"] and (since is None or timestamp >= since)
        and all(attribute_matches(f, data, None, now) for f in body.get("filters") or [])
    )
    target = count["value"]
    return {"eq": n == target, "neq": n != target, "gt": n > target, "gte": n >= target,
            "lt": n < target, "lte": n <= target}[count["operator"]]
