"""What a long-running worker process does once for itself."""

import gc
import os

_frozen_in: int | None = None  # the process whose heap was frozen


def freeze_long_lived() -> bool:
    """Collect garbage, then hand every object alive now to the garbage collector's
    permanent generation, once per process; tell whether it was done now.

    A sweeper's process keeps Django, the apps' modules, their models and caches alive
    for as long as it runs: some hundred thousand objects that every full collection
    would walk again (about a tenth of a second each time, several times a minute under
    load) to find nothing. Frozen, they are still freed by reference counting when
    they die; only a cycle among them that dies later would be kept. What is allocated
    afterwards (batches of journeys, messages) is collected as before.
    """
    global _frozen_in
    if _frozen_in == os.getpid():
        return False
    gc.collect()
    gc.freeze()
    _frozen_in = os.getpid()
    return True
