"""glibc malloc tuned for a process that moves tensors: the runtime's, and a python step's worker."""

from __future__ import annotations


def tune_malloc(max_bytes: int = 32 << 20) -> bool:
    """Keep tensor-sized buffers (up to 32 MiB) in glibc's heap for reuse instead of fresh mmaps.

    Each request allocates a few tensor-sized buffers (the received message, the encoded
    forward); from fresh mmaps every page is faulted in again per request, which costs more than
    the copy itself (about 3 ms per 8 MB buffer on a 2-core x86 machine). Freed heap memory is
    kept (the trim threshold is raised), so a site holds on to a few tensors' worth of memory.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, max_bytes)) and bool(libc.mallopt(m_trim_threshold, 8 * max_bytes))
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False
