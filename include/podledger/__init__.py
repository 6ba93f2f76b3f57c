"""podledger: what every Kubernetes namespace, workload and pod really costs, from Prometheus and the bill."""

from __future__ import annotations

import os
import sys

__version__ = "0.2.0"

# polars' allocator (jemalloc) keeps freed pages for 0.5 s ("dirty") and then 1 s more ("muzzy") before the kernel
# gets them back. Enrichment frees a day's frames (~700 MB for 15,000 pods) and allocates the next day's at once:
# pages still muzzy from the day before then count in the next day's peak. Returning muzzy pages at once lowers
# every day's peak by 30-110 MiB for ~6 % more CPU (page faults; BENCHMARKS.md, bench/enrich.py). jemalloc
# reads the setting when polars is first imported, so it applies when podledger is imported before polars (the DAGs,
# the CLI); a value of the caller's own in _RJEM_MALLOC_CONF comes after it and wins.
ALLOCATOR_SETTING = "muzzy_decay_ms:0"
if "polars" not in sys.modules:
    os.environ["_RJEM_MALLOC_CONF"] = ",".join(
        part for part in (ALLOCATOR_SETTING, os.environ.get("_RJEM_MALLOC_CONF", "")) if part)
