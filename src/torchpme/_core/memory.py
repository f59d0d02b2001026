"""Large fresh CPU buffers backed by transparent huge pages (Linux).

A buffer above the C allocator's mmap threshold (32 MB) is fresh memory on every
call, and touching it faults in one 4 kB page at a time: for the pair-sized and
mesh-sized buffers of a large system this costs more than the arithmetic (71 MB:
18 ms of faults against 4 ms with 2 MB pages, on a 2-core VM whose kernel gives
huge pages on request, ``transparent_hugepage=madvise``, a common default).
:func:`advise` asks the kernel for huge pages on a buffer's untouched pages
(``madvise(MADV_HUGEPAGE)``, what NumPy does for its own large arrays and
PyTorch only with ``THP_MEM_ALLOC_ENABLE=1`` set before it starts). Elsewhere, on
other systems, for small buffers, while compiling and in TorchScript it does
nothing.
"""

import ctypes
import functools
import sys
from typing import List

import torch

__all__ = ["advise", "empty", "empty_like"]

# buffers smaller than this are left alone (the allocator reuses them anyway)
MIN_BYTES = 1 << 22
_HUGE_PAGE = 1 << 21
_MADV_HUGEPAGE = 14


@functools.lru_cache(maxsize=1)
def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


@torch.jit.unused
def advise(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``, its untouched pages marked for huge pages (a hint: on failure,
    or where it does not apply, nothing changes)."""
    size = tensor.numel() * tensor.element_size()
    if tensor.device.type != "cpu" or size < MIN_BYTES:
        return tensor
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and compiler.is_compiling():
        return tensor
    madvise = _madvise()
    if madvise is None:
        return tensor
    address = tensor.data_ptr()
    start = (address + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
    stop = (address + size) & ~(_HUGE_PAGE - 1)
    if stop > start:
        madvise(start, stop - start, _MADV_HUGEPAGE)
    return tensor


def empty(shape: List[int], like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised buffer on ``like``'s device, huge pages where they apply."""
    buffer = torch.empty(shape, dtype=dtype, device=like.device)
    if torch.jit.is_scripting():
        return buffer
    return advise(buffer)


def empty_like(tensor: torch.Tensor) -> torch.Tensor:
    """:func:`empty` with ``tensor``'s shape, dtype and device."""
    return empty(list(tensor.shape), tensor, tensor.dtype)
