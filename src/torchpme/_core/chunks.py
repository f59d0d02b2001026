"""How many items (pairs, atoms) the hot loops process at a time."""

import torch

__all__ = ["chunk_length"]


def chunk_length(chunk: int, total: int, device: torch.device) -> int:
    """``chunk`` items at a time on CPU, where a chunk's temporaries stay in cache
    and the allocator reuses them (fresh buffers above its mmap threshold cost page
    faults); all ``total`` at once elsewhere, where a caching allocator has no
    faults to avoid and every chunk would cost its own kernel launches."""
    if device.type != "cpu":
        return max(1, total)
    return max(1, chunk)
