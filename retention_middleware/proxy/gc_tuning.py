"""The proxy's garbage collector settings, applied once start-up is over (the proxy owns its process).

Each request allocates a few hundred short-lived containers (scope, headers, messages, the access
record), almost none of them in reference cycles; with CPython's default first-generation
threshold (700) a young collection runs every request or two, and every tenth of those walks the
older generations too, start-up's ~100,000 long-lived objects (modules, settings, the pooled
client) included. Freezing what start-up built moves it out of the collector's sight for good, and
a larger first threshold makes young collections rarer; the memory they hold back is bounded by the
threshold (objects, not bytes), and cycles are still collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def tune_after_startup() -> None:
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
