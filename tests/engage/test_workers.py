"""A worker process freezes what it keeps alive, once."""

import gc
import os

import pytest

from engage import workers


@pytest.fixture
def unfrozen(monkeypatch):
    """This process as a worker that has not frozen its heap yet; unfrozen after."""
    monkeypatch.setattr(workers, "_frozen_in", None)
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_the_objects_alive_are_frozen_once_per_process(unfrozen):
    assert gc.get_freeze_count() == 0

    assert workers.freeze_long_lived() is True
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # Django and the apps' modules, at least
    assert workers._frozen_in == os.getpid()

    kept = [[n] for n in range(5000)]  # objects made afterwards are not frozen again
    assert workers.freeze_long_lived() is False
    assert gc.get_freeze_count() <= frozen  # (frozen objects that died are gone)
    collected = {id(item) for item in gc.get_objects()}  # the generations it still walks
    assert all(id(item) in collected for item in kept)


def test_a_forked_process_freezes_its_own_heap(unfrozen, monkeypatch):
    workers.freeze_long_lived()
    monkeypatch.setattr(os, "getpid", lambda: workers._frozen_in + 1)  # as in a child
    before = gc.get_freeze_count()
    kept = [[n] for n in range(5000)]

    assert workers.freeze_long_lived() is True
    assert gc.get_freeze_count() >= before + len(kept)
    collected = {id(item) for item in gc.get_objects()}
    assert not any(id(item) in collected for item in kept)
