"""How the chunk sizes of :mod:`torchpme._core.defaults` apply to a hot loop."""

import torch

from .validation import compiling

__all__ = ["chunk_length"]


def chunk_length(chunk: int, total: int, device: torch.device) -> int:
    """Items per step of a loop over ``total`` items: ``chunk`` on CPU, all of them
    elsewhere and while ``torch.compile`` traces.

    On CPU a chunk's temporaries stay in cache and the allocator reuses them
    (fresh buffers above its mmap threshold cost page faults). A caching device
    allocator has no faults to avoid, and every chunk would cost its own kernel
    launches. A traced loop is unrolled into the graph, which then grows with
    the number of chunks and compiles to slower code.
    """
    if device.type != "cpu" or compiling():
        return max(1, total)
    return max(1, chunk)
