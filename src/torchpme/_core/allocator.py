"""Opt-in tuning of the C allocator (glibc) for many steps of the same size.

PyTorch's CPU tensors come from ``malloc``. By default glibc returns freed memory at
the top of its heap to the system once 128 kB–64 MB of it is free, and serves
large requests (above a threshold that starts at 128 kB and adapts up to 32 MB)
with fresh ``mmap`` regions. For a calculation repeated every MD step or every
training batch, that means the same megabytes are handed back and faulted in
again, one 4 kB page at a time, on every call. Buffers above 32 MB are always
fresh ``mmap`` regions; this does not change them. ``benchmarks/batching.py
--keep-freed-memory`` and ``benchmarks/calculators.py --keep-freed-memory``
measure the difference on a given machine.
"""

import ctypes
import functools
import sys

__all__ = ["keep_freed_memory"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


@functools.lru_cache(maxsize=1)
def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def keep_freed_memory(
    trim_threshold: int = 1 << 30, top_pad: int = 1 << 28, mmap_threshold: int = 1 << 25
) -> bool:
    """Keep freed memory in the process for reuse instead of returning it to the
    system (glibc on Linux; elsewhere nothing happens and ``False`` is returned).

    A process-wide setting for programs that repeat calculations of one size (MD,
    training loops, benchmarks): repeated steps stop paying page faults for the
    buffers they free and allocate again, and in exchange the resident memory
    stays at its high-water mark. The ``torchpme`` command calls it; a library
    does not change its caller's allocator unasked, so a program that wants this
    trade calls it itself, once.

    Args:
        trim_threshold: bytes of free memory at the top of the heap before any is
            returned to the system (``M_TRIM_THRESHOLD``).
        top_pad: extra bytes requested whenever the heap grows (``M_TOP_PAD``).
        mmap_threshold: requests from this size up get their own ``mmap`` region
            (``M_MMAP_THRESHOLD``; glibc's maximum, 32 MB, by default).

    Returns:
        Whether the allocator accepted all three settings.
    """
    for name, value in [
        ("trim_threshold", trim_threshold),
        ("top_pad", top_pad),
        ("mmap_threshold", mmap_threshold),
    ]:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if not 0 <= value < 2**31:
            raise ValueError(f"{name} must be in [0, 2**31), got {value}")
    mallopt = _mallopt()
    if mallopt is None:
        return False
    accepted = [
        mallopt(parameter, value) == 1
        for parameter, value in [
            (_M_TRIM_THRESHOLD, trim_threshold),
            (_M_TOP_PAD, top_pad),
            (_M_MMAP_THRESHOLD, mmap_threshold),
        ]
    ]
    return all(accepted)
