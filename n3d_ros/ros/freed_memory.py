"""Give memory back after deactivate and cleanup.

Closing the pipeline drops the model's tensors, but glibc keeps the freed pages in its malloc arenas (one per
thread that allocated: the inference thread, executor threads), so RSS stays near its peak for the life of the
process. malloc_trim(0) returns free pages of every arena to the system. GPU blocks cached by torch's allocator
are returned with torch.cuda.empty_cache(). bench/bench_node_memory.py measures the effect.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from typing import Optional

_libc: Optional[ctypes.CDLL] = None


def _malloc_trim():
    """glibc's malloc_trim, or None on other C libraries (musl, macOS), where there is nothing to trim this way."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        _libc = ctypes.CDLL(name)
    return getattr(_libc, "malloc_trim", None)


def release_freed_memory() -> bool:
    """Collect garbage, empty torch's CUDA cache (only if torch is already imported), and trim malloc arenas.
    True when malloc_trim ran."""
    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just for this
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
