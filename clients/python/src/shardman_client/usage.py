"""What the process reports of itself with every beat (no extra request): its CPU time, its resident
memory, and the label shardman lists its shards under."""

from __future__ import annotations

import os
import socket
import sys
import time

#: shardman takes process labels of at most this many characters.
PROCESS_LABEL_MAX_CHARS = 128


def default_process_label() -> str:
    """`<hostname>:<pid>`, unique among the running processes of a fleet (cut from the left if long)."""
    return f"{socket.gethostname()}:{os.getpid()}"[-PROCESS_LABEL_MAX_CHARS:]


def cpu_seconds() -> float:
    """The CPU time (user and system) this process has used so far."""
    return time.process_time()


def rss_bytes() -> int | None:
    """Resident memory now, from /proc/self/statm; where there is none (macOS, the BSDs), the peak
    that getrusage keeps, as no portable call tells the current size; None on Windows."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
