"""podledger sets polars' allocator to return freed pages at once (later days' peaks stay where the first day's is);
jemalloc reads the setting when polars loads, so only an import of podledger before polars can set it, and a value
of the user's own must still win."""

from __future__ import annotations

import os
import subprocess
import sys


def _conf_after(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code + "; import os; print(os.environ.get('_RJEM_MALLOC_CONF', ''))"],
                          env=env, capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.strip()


def test_importing_podledger_first_sets_the_allocator_and_the_users_setting_wins():
    from podledger import ALLOCATOR_SETTING

    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    conf = _conf_after("import podledger, polars", env)
    # polars puts its own defaults first; ours comes after them (a later option wins in jemalloc's parser)
    assert conf.split(",")[-1] == ALLOCATOR_SETTING == "muzzy_decay_ms:0", conf
    assert conf.startswith("dirty_decay_ms:"), conf
    mine = _conf_after("import podledger, polars", {**env, "_RJEM_MALLOC_CONF": "muzzy_decay_ms:250"})
    assert mine.split(",")[-2:] == [ALLOCATOR_SETTING, "muzzy_decay_ms:250"], mine
    # polars already loaded: too late to change its allocator, so nothing is pretended
    assert ALLOCATOR_SETTING not in _conf_after("import polars, podledger", env)


def test_the_airflow_dags_import_podledger_before_polars():
    """The DAG files load podledger (through the plugin) before anything loads polars."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    paths = [str(root / "plugins"), str(root / "include")]
    code = f"import sys; sys.path[:0] = {paths!r}; import podledger_airflow.dag_factory"
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    assert _conf_after(code, env).endswith("muzzy_decay_ms:0")


# In a fresh interpreter: free a 4 MiB block, then allocate one again, and say whether glibc gave the second its own
# mapping (returned to the kernel when freed) or carved it from a heap that keeps what is freed.
SECOND_BLOCK_MAPPED = """
import ctypes
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Mallinfo2
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblkhd
block = libc.malloc(4 << 20)
print(libc.mallinfo2().hblkhd - before >= 4 << 20)
libc.free(block)
"""


def _second_block_mapped(first: str, env: dict[str, str]) -> bool:
    done = subprocess.run([sys.executable, "-c", first + "\n" + SECOND_BLOCK_MAPPED], env=env, capture_output=True,
                          text=True, check=True, timeout=60)
    return done.stdout.strip() == "True"


def test_importing_podledger_keeps_large_buffers_mapped_after_the_first_is_freed():
    """glibc raises its mmap threshold on the first large free (later files' buffers then stay in the heap: days
    after the first peak higher); podledger fixes it, unless the caller set a threshold of their own."""
    import podledger

    if not podledger.MMAP_THRESHOLD_FIXED:
        import pytest

        pytest.skip("not glibc: no mmap threshold to fix")  # Debian, the Docker image and CI are glibc
    env = {k: v for k, v in os.environ.items() if k not in {"MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"}}
    assert not _second_block_mapped("", env)  # glibc's own behaviour, which the fix changes
    assert _second_block_mapped("import podledger", env)
    assert not _second_block_mapped("import podledger", {**env, "MALLOC_MMAP_THRESHOLD_": str(16 << 20)})
