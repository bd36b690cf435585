"""The hand-written SQL helpers read and write every value as the ORM does, on both
databases."""

import json
from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, transaction

from engage.models import Workspace
from engage.sql import (
    id_array,
    in_ids,
    in_values,
    insert_rows,
    json_text,
    select_models,
    update_fields,
    update_rows,
)
from people.models import Event, Person
from people.services import EVENT_DEDUP_INDEX
from segments.models import Segment
from tests.factories import make_person

FIELDS = ["workspace", "person", "anonymous_id", "name", "type", "timestamp", "data",
          "dedup_id", "received_at"]
WHEN = datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=UTC)
DATA = {"price": 23.5, "name": "Zoë \"quoted\" \\ back", "nested": {"list": [1, None, True]},
        "empty": {}, "text": "line\nbreak"}


def test_inserted_rows_read_back_through_the_orm_as_written(workspace):
    ada = make_person(workspace, "ada")
    rows = [(workspace.pk, ada.pk, None, "purchased", "event", WHEN, DATA, "d-1", WHEN),
            (workspace.pk, None, "anon-1", "viewed", "page", WHEN, {}, None, WHEN)]
    written = insert_rows(Event, FIELDS, rows, returning=("id", "name"))
    assert sorted(name for _, name in written) == ["purchased", "viewed"]
    purchased = Event.objects.get(name="purchased")
    assert (purchased.person_id, purchased.anonymous_id, purchased.type) == (ada.pk, None, "event")
    assert purchased.timestamp == WHEN and purchased.received_at == WHEN
    assert purchased.data == DATA and purchased.dedup_id == "d-1"
    viewed = Event.objects.get(name="viewed")
    assert (viewed.person_id, viewed.anonymous_id, viewed.data) == (None, "anon-1", {})
    # JSON written this way is queried like JSON the ORM wrote.
    assert Event.objects.filter(data__nested__list__2=True).get() == purchased


@pytest.mark.parametrize("value", [
    DATA, [1, "two", None, 3.25, -0.5, 1e16, False], {"tag": Segment.Kind.DATA_DRIVEN},
    {"emoji": "\U0001f600", "separator": "a\u2028b"}, [], {}, "text", 7])
def test_json_text_is_what_json_dumps_writes(value):
    assert json_text(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("value", [{"big": 10**30}, {1: "an int key"}, [-(2**63) - 1]])
def test_json_text_writes_what_the_fast_encoder_refuses_through_json(value):
    assert json_text(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("value", [{"when": WHEN}, [WHEN.date()]])
def test_json_text_refuses_what_json_dumps_refuses(value):
    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        json_text(value)


def test_a_huge_integer_is_written_and_read_back_whole(workspace):
    ada = make_person(workspace, "ada")
    data = {"order": 123456789012345678901234567890, "n": -(2**63) - 1}
    insert_rows(Event, FIELDS, [(workspace.pk, ada.pk, None, "big", "event", WHEN, data,
                                 None, WHEN)])
    assert Event.objects.get(name="big").data == data


def test_conflicting_rows_are_skipped_on_the_named_index_only(workspace):
    row = (workspace.pk, None, None, "once", "event", WHEN, {}, "same-id", WHEN)
    skip = {"returning": ("id",), "skip_conflicts_on": EVENT_DEDUP_INDEX}
    ((first,),) = insert_rows(Event, FIELDS, [row], **skip)
    assert insert_rows(Event, FIELDS, [row, row], **skip) == []
    assert Event.objects.filter(dedup_id="same-id").count() == 1
    assert insert_rows(Event, FIELDS, []) == []
    # A conflict on another unique index (here the primary key) is not skipped.
    other = (first, workspace.pk, None, None, "again", "event", WHEN, {}, "other-id", WHEN)
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(Event, ["id", *FIELDS], [other], **skip)


def test_selected_models_equal_what_the_orm_loads(workspace):
    ada = make_person(workspace, "ada", email="Ada@Example.com", plan="pro",
                      tags=["a", "b"], score=1.5, vip=True)
    (found,) = select_models(Person, "workspace_id = %s AND customer_id = %s",
                             [workspace.pk, "ada"])
    loaded = Person.objects.get(pk=ada.pk)
    for field in Person._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(loaded, field.attname), field.name
    assert not found._state.adding and found.attributes["tags"] == ["a", "b"]
    empty = make_person(workspace, "empty")
    Person.objects.filter(pk=empty.pk).update(attributes={})
    (found,) = select_models(Person, "id = %s", [empty.pk])
    assert found.attributes == {} == Person.objects.get(pk=empty.pk).attributes
    found.attributes["new"] = 1  # an object of its own, not one shared by every row
    (again,) = select_models(Person, "id = %s", [empty.pk])
    assert again.attributes == {}
    (ws,) = select_models(Workspace, "site_id = %s", [workspace.site_id], limit=1)
    assert ws == workspace and ws.created_at == Workspace.objects.get().created_at
    assert select_models(Person, "customer_id = %s", ["nobody"]) == []


def test_selected_models_behave_as_loaded_ones(workspace):
    """Built without Model.__init__, an instance still saves as an update, follows its
    relations and reads its datetimes as aware UTC ones."""
    from django.db.models import signals

    ada = make_person(workspace, "ada", plan="free")
    (found,) = select_models(Person, "id = %s", [ada.pk])
    assert (found._state.adding, found._state.db) == (False, "default")
    assert found.created_at == ada.created_at and found.created_at.utcoffset().total_seconds() == 0
    assert found.workspace == workspace  # the relation is read through its id
    found.attributes = {"plan": "pro"}
    found.save(update_fields=["attributes"])
    assert Person.objects.count() == 1 and Person.objects.get().attributes == {"plan": "pro"}

    seen = []

    def note(sender, instance, **kwargs):
        seen.append(instance.pk)

    signals.post_init.connect(note, sender=Person)
    try:  # a model someone listens to is built the ORM's way, signals and all
        (again,) = select_models(Person, "id = %s", [ada.pk])
    finally:
        signals.post_init.disconnect(note, sender=Person)
    assert seen == [ada.pk] and again.attributes == {"plan": "pro"}


def test_in_ids_takes_any_number_of_ids(workspace):
    people = [make_person(workspace, name) for name in ("ada", "bob", "cy")]
    sql, params = in_ids("id", [people[0].pk, people[2].pk, 10**12])
    assert sorted(p.customer_id for p in select_models(Person, sql, params)) == ["ada", "cy"]
    assert id_array([3, -1, 2]) == "{3,-1,2}"
    with pytest.raises(ValueError):
        id_array(["1}; DROP TABLE people_person; --"])


def test_a_locked_select_runs_inside_a_transaction(workspace):
    make_person(workspace, "ada")
    with transaction.atomic():
        (found,) = select_models(Person, "customer_id = %s", ["ada"], lock=True)
    assert found.customer_id == "ada"


def test_in_values_matches_strings_and_numbers(workspace):
    people = [make_person(workspace, name) for name in ("ada", "bob", "cy")]
    sql, params = in_values("customer_id", ["ada", "cy", "zed"])
    assert sorted(p.customer_id for p in select_models(Person, sql, params)) == ["ada", "cy"]
    sql, params = in_values("id", [people[1].pk])
    assert [p.customer_id for p in select_models(Person, sql, params)] == ["bob"]


def test_updated_fields_read_back_and_the_others_stay(workspace):
    ada = make_person(workspace, "ada", email="ada@example.com", plan="free")
    ada.attributes = {**ada.attributes, "plan": "pro", "note": "Zoë"}
    ada.unsubscribed = True
    ada.customer_id = "changed-in-memory-only"
    update_fields(ada, {"attributes", "unsubscribed"})
    loaded = Person.objects.get(pk=ada.pk)
    assert loaded.attributes == {"email": "ada@example.com", "plan": "pro", "note": "Zoë"}
    assert loaded.unsubscribed and loaded.customer_id == "ada"


def test_update_rows_sets_each_row_its_own_values(workspace):
    ada = make_person(workspace, "ada", email="ada@example.com", plan="free")
    bob = make_person(workspace, "bob", plan="free")
    cy = make_person(workspace, "cy", plan="free")
    update_rows(Person, ["attributes", "unsubscribed", "updated_at", "email"], [
        (ada.pk, {"plan": "pro", "nested": {"a": [1, None]}}, True, WHEN, None),
        (bob.pk, {"plan": "Zoë \"q\""}, False, WHEN, "bob@example.com"),
    ])
    ada_now, bob_now, cy_now = (Person.objects.get(pk=p.pk) for p in (ada, bob, cy))
    assert ada_now.attributes == {"plan": "pro", "nested": {"a": [1, None]}}
    assert ada_now.unsubscribed and ada_now.updated_at == WHEN and ada_now.email is None
    assert bob_now.attributes == {"plan": "Zoë \"q\""} and not bob_now.unsubscribed
    assert bob_now.email == "bob@example.com" and bob_now.updated_at == WHEN
    assert cy_now.attributes == cy.attributes and cy_now.updated_at == cy.updated_at
    update_rows(Person, ["unsubscribed"], [])  # nothing to do, no statement


def test_a_nullable_json_field_keeps_none_as_sql_null(workspace):
    segment = Segment.objects.create(
        workspace=workspace, name="Pro", kind="data_driven", created_at=WHEN, updated_at=WHEN,
        conditions={"attribute": {"field": "plan", "operator": "eq", "value": "pro"}})
    update_rows(Segment, ["kind", "conditions"], [(segment.pk, "manual", None)])
    assert Segment.objects.filter(pk=segment.pk, conditions__isnull=True).exists()


def test_statement_plans_are_reused_and_stay_bounded(workspace, monkeypatch):
    from django.db import DEFAULT_DB_ALIAS, connections

    from engage import sql

    make_person(workspace, "ada")
    conn = connections[DEFAULT_DB_ALIAS]
    plans = conn.__dict__.setdefault("_engage_sql_plans", {})
    plans.clear()
    for _ in range(3):
        select_models(Person, "customer_id = %s", ["ada"])
    assert len(plans) == 1
    monkeypatch.setattr(sql, "MAX_PLANS", 2)
    for n in range(1, 6):
        where, params = in_values("customer_id", ["ada"] * n)
        assert [p.customer_id for p in select_models(Person, where, params)] == ["ada"]
    assert len(plans) <= 2


def test_a_value_too_long_for_its_column_is_refused_not_cut(workspace):
    from django.db import DataError, connection

    too_long = "x" * 101  # Event.name holds 100 characters at most
    assert Event._meta.get_field("name").max_length < len(too_long)
    row = (workspace.pk, None, None, too_long, "event", WHEN, {}, None, WHEN)
    if connection.vendor == "postgresql":
        with pytest.raises(DataError), transaction.atomic():
            insert_rows(Event, FIELDS, [row])
        assert not Event.objects.exists()
    else:  # SQLite keeps text whole whatever the declared length
        insert_rows(Event, FIELDS, [row])
        assert Event.objects.get().name == too_long


def test_none_in_a_json_column_that_is_not_null_is_refused_as_by_the_orm(workspace):
    row = (workspace.pk, None, None, "none", "event", WHEN, None, None, WHEN)
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(Event, FIELDS, [row])
    assert not Event.objects.exists()


def test_a_json_field_with_its_own_encoder_is_written_through_it():
    from decimal import Decimal

    from django.core.serializers.json import DjangoJSONEncoder
    from django.db import DEFAULT_DB_ALIAS, connections, models

    from engage.sql import _json_ready

    field = models.JSONField(encoder=DjangoJSONEncoder)
    ready = _json_ready(connections[DEFAULT_DB_ALIAS], field)
    written = ready({"price": Decimal("1.50"), "at": WHEN})
    as_json = written if isinstance(written, str) else json.dumps(written)
    assert json.loads(as_json) == {"price": "1.50", "at": "2026-11-23T09:30:15.123Z"}
    assert ready(None) is None
