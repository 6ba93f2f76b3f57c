"""podledger: what every Kubernetes namespace, workload and pod really costs, from Prometheus and the bill."""

from __future__ import annotations

import ctypes
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


# glibc's malloc (Python's bytes: every metric file read, every output written) starts by giving allocations over
# 128 KiB their own mapping, returned to the kernel when freed; but the first such free raises that threshold to the
# freed size (up to 32 MiB), so from then on the files' buffers come from heaps that keep what is freed: a long
# enrichment's later days then peak ~60 MiB higher, drifting up (BENCHMARKS.md, bench/enrich.py). A fixed
# threshold (mallopt, the same as MALLOC_MMAP_THRESHOLD_=131072) keeps the first day's behaviour on every day. A
# threshold of the caller's own (that variable, or GLIBC_TUNABLES) is left alone.
MMAP_THRESHOLD = 128 * 1024
M_MMAP_THRESHOLD = -3  # malloc.h


def _fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD`; False where it is not glibc or the caller set one."""
    libc = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else None
    if not (libc or "").startswith("glibc") or "MALLOC_MMAP_THRESHOLD_" in os.environ or \
            "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    return bool(mallopt and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)


MMAP_THRESHOLD_FIXED = _fix_mmap_threshold()
