"""How many items (pairs, atoms, meshes) the hot loops process at a time."""

import torch

from .validation import compiling

__all__ = ["MESH_STACK", "PAIRS", "STENCIL_ENTRIES", "chunk_length"]

# On CPU the hot loops work in chunks small enough that their temporaries stay in
# cache and are reused by the allocator: a fresh buffer above its mmap threshold
# (32 MB) costs its page faults on every call (N n³ stencil entries are 260 MB for
# 262144 atoms and n = 5; 18 M pairs, 144 MB per value).
PAIRS = 1 << 16  # neighbour pairs per chunk (distances, pair sums)
STENCIL_ENTRIES = 1 << 17  # atoms × n³ stencil entries per chunk (spread, gather)
# mesh points of the systems of a batch transformed together (4 meshes of 32³): a
# stack's transforms then allocate ~1 MB buffers that glibc reuses, where 16 meshes
# of 32³ (2^19 points) took ~10 000 page faults per step. The benchmark's batch
# step (one plan per group, separate processes, two runs): 2^17 points 21–22 ms,
# 2^16 24–35, 2^18 22–33, 2^19 31–45; one mesh per stack 33–48 ms
MESH_STACK = 1 << 17


def chunk_length(chunk: int, total: int, device: torch.device) -> int:
    """``chunk`` items at a time on CPU, where a chunk's temporaries stay in cache
    and the allocator reuses them (fresh buffers above its mmap threshold cost page
    faults); all ``total`` at once elsewhere, where a caching allocator has no
    faults to avoid and every chunk would cost its own kernel launches, and while
    ``torch.compile`` traces (the loop would be unrolled into the graph: compiled
    PME at N = 4096 took 201 ms with chunks, 87 ms without)."""
    if device.type != "cpu" or compiling():
        return max(1, total)
    return max(1, chunk)
