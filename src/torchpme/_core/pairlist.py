"""Index structures derived from one neighbour list, kept while the list is unchanged.

An MD run evaluates many steps on one neighbour list (until atoms move by more than
the skin), and one step uses the list several times (distances, the pair sum,
their backward passes). What can be derived from the indices alone is derived once:

* the contiguous index columns ``first``, ``second`` (every gather and
  accumulation over pairs needs them contiguous; a column of ``(P, 2)`` is strided),
  int32 for kept lists;
* on CPU, for large lists seen a second time, the pair-to-atom incidence as two
  sparse CSR matrices, so that accumulating per-pair rows at both ends of each pair
  (the forces of a distance backward) is a multithreaded sparse product instead of
  a serial indexed accumulation (from :data:`~torchpme._core.defaults.MIN_SPARSE_PAIRS`
  pairs on);
* the ``(P, 3)`` work buffer of the distance function, handed from one step to
  the next once the previous step is done with it.

Only the most recent neighbour list on CPU is kept, while that tensor lives (on
accelerators the checks below would synchronise with the host). A kept entry
is used only if the version counter is unchanged and the values still agree
(memory shared with NumPy can change without the counter): a comparison that reads
but allocates nothing.
"""

import sys
import threading
import warnings
import weakref
from typing import Dict, Optional, Tuple

import torch
import torch.utils.weak

from . import defaults
from .validation import compiling

__all__ = [
    "PairEnds",
    "accumulate_at_ends",
    "add_at_ends_atomically",
    "columns_for",
    "index_columns",
    "lookup",
]

_ENTRIES = torch.utils.weak.WeakIdKeyDictionary()
_LOCK = threading.Lock()  # hands out work buffers, one owner at a time


def columns_for(
    neighbor_indices: torch.Tensor, distances: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`index_columns`, without comparing the list again when ``distances``
    come straight from :func:`torchpme.neighbors.pair_distances` of this kept,
    unmodified list (the columns are then those the distances were made from)."""
    if not compiling():
        entry = getattr(distances.grad_fn, "pairs", None)
        if (
            isinstance(entry, _Entry)
            and _ENTRIES.get(neighbor_indices) is entry
            and entry.version == neighbor_indices._version
        ):
            return entry.first, entry.second
    return index_columns(neighbor_indices)


class PairEnds:
    """The incidence of ``P`` pairs on ``N`` atoms as two ``(N, P)`` CSR structures
    (the pairs ending, and the pairs starting, at each atom), int32 indices."""

    def __init__(self, first: torch.Tensor, second: torch.Tensor, n_atoms: int):
        self.n_atoms = n_atoms
        self.n_pairs = first.shape[0]
        self.starting = self._structure(first)
        self.ending = self._structure(second)

    def _structure(self, index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        rows = torch.zeros(self.n_atoms + 1, dtype=torch.int32)
        rows[1:] = torch.cumsum(torch.bincount(index, minlength=self.n_atoms), 0)
        # a stable sort keeps each atom's pairs in list order: deterministic sums
        columns = torch.argsort(index.to(torch.int32), stable=True).to(torch.int32)
        return rows, columns

    def _matrix(self, structure, dtype: torch.dtype) -> torch.Tensor:
        ones = torch.ones((), dtype=dtype).expand(self.n_pairs)  # no P-sized copy
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            return torch.sparse_csr_tensor(
                structure[0],
                structure[1],
                ones,
                (self.n_atoms, self.n_pairs),
                check_invariants=False,
            )

    def accumulate(self, rows: torch.Tensor) -> torch.Tensor:
        """``Σ_{p ends at a} rows_p − Σ_{p starts at a} rows_p``, ``(N, k)``."""
        result = self._matrix(self.ending, rows.dtype) @ rows
        return result.sub_(self._matrix(self.starting, rows.dtype) @ rows)


# the int32 halves of an int64 index (native byte order): value, then sign word
_LOW, _HIGH = (0, 1) if sys.byteorder == "little" else (1, 0)


def _fits_int32(neighbor_indices: torch.Tensor) -> bool:
    """Whether contiguous int64 ``(P, 2)`` indices lie in ``[0, 2³¹)`` (read once per
    kept list, on CPU)."""
    if neighbor_indices.dtype != torch.int64 or not neighbor_indices.is_contiguous():
        return False  # its int32 words are compared through a view (see below)
    if neighbor_indices.numel() == 0:
        return True
    low, high = torch.aminmax(neighbor_indices)
    return bool(low >= 0) and bool(high < 2**31)


def _same_columns(entry: "_Entry", neighbor_indices: torch.Tensor) -> bool:
    """Whether ``neighbor_indices`` still hold the entry's columns (reads, allocates
    nothing)."""
    if entry.first.dtype == neighbor_indices.dtype:
        return torch.equal(entry.first, neighbor_indices[:, 0]) and torch.equal(
            entry.second, neighbor_indices[:, 1]
        )
    # int32 columns of int64 indices: the value words must match and the sign
    # words be zero (cheaper than a comparison across dtypes)
    if not neighbor_indices.is_contiguous():
        return False
    words = neighbor_indices.view(torch.int32)  # (P, 4)
    zero = torch.zeros((), dtype=torch.int32).expand(words.shape[0], 2)
    return (
        torch.equal(entry.first, words[:, _LOW])
        and torch.equal(entry.second, words[:, 2 + _LOW])
        and torch.equal(words[:, _HIGH::2], zero)
    )


def _holds(holder, buffer: torch.Tensor) -> bool:
    held = [getattr(holder, name, None) for name in ("vectors", "busy")]
    return any(tensor is buffer for tensor in held)


class _Entry:
    """What is derived from one neighbour list: its index columns and, per atom
    count, the pair incidence (built the second time it is asked for)."""

    def __init__(self, neighbor_indices: torch.Tensor, version: int = -1):
        self.version = version
        dtype = neighbor_indices.dtype
        if version >= 0 and _fits_int32(neighbor_indices):
            # half the memory of int64 columns (kept while the list lives), and
            # gathers and accumulations on CPU are as fast or faster with them
            dtype = torch.int32
        self.first = neighbor_indices[:, 0].to(dtype).contiguous()
        self.second = neighbor_indices[:, 1].to(dtype).contiguous()
        self.ends: Dict[int, Optional[PairEnds]] = {}
        self._rows: Dict[torch.dtype, Tuple[torch.Tensor, weakref.ref]] = {}

    def pair_rows(self, dtype: torch.dtype, owner) -> torch.Tensor:
        """A ``(P, 3)`` work buffer for ``owner``, an autograd context that keeps it
        as ``owner.vectors`` (then ``owner.busy`` while its backward pass runs)
        until it is done with it.

        The buffer of the previous step is handed out again once its owner is done
        with it (or gone): a fresh buffer this large costs its page faults on
        every step, a large share of the distance computation for millions of
        pairs. It stays allocated while the list lives.
        """
        with _LOCK:
            kept = self._rows.get(dtype)
            if kept is not None:
                buffer, previous = kept
                holder = previous()
                if holder is None or not _holds(holder, buffer):
                    return self._claim(dtype, buffer, owner)
            buffer = torch.empty(
                (self.first.shape[0], 3), dtype=dtype, device=self.first.device
            )
            return self._claim(dtype, buffer, owner)

    def _claim(self, dtype: torch.dtype, buffer: torch.Tensor, owner) -> torch.Tensor:
        # the owner holds the buffer once it is stored (under the lock: no other
        # thread sees it free in between)
        owner.vectors = buffer
        self._rows[dtype] = (buffer, weakref.ref(owner))
        return buffer

    def pair_ends(self, n_atoms: int) -> Optional[PairEnds]:
        """The :class:`PairEnds` of the list on ``n_atoms`` atoms, built on the
        second request (a list used once does not pay the setup); ``None`` on the
        first request, off CPU and for short lists."""
        n_pairs = self.first.shape[0]
        if (
            self.first.device.type != "cpu"
            or n_pairs < defaults.MIN_SPARSE_PAIRS
            or max(n_pairs, n_atoms) >= 2**31
        ):
            return None
        if n_atoms not in self.ends:
            self.ends[n_atoms] = None  # seen once
            return None
        ends = self.ends[n_atoms]
        if ends is None:
            ends = PairEnds(self.first, self.second, n_atoms)
            self.ends[n_atoms] = ends
        return ends


def lookup(neighbor_indices: torch.Tensor) -> _Entry:
    """The kept entry of ``neighbor_indices`` if it is still valid, else a new one
    (kept unless ``torch.compile`` is tracing)."""
    if compiling() or neighbor_indices.device.type != "cpu":
        # nothing kept: no version read while tracing (it would break the graph),
        # and no comparison on an accelerator (a host synchronisation)
        return _Entry(neighbor_indices)
    entry = _ENTRIES.get(neighbor_indices)
    if (
        entry is not None
        and entry.version == neighbor_indices._version
        and _same_columns(entry, neighbor_indices)
    ):
        return entry
    entry = _Entry(neighbor_indices, neighbor_indices._version)
    _ENTRIES.clear()
    _ENTRIES[neighbor_indices] = entry
    return entry


def index_columns(neighbor_indices: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(first, second)``: the columns of ``(P, 2)`` pair indices as contiguous
    tensors, made once per indices tensor while it is unchanged."""
    entry = lookup(neighbor_indices)
    return entry.first, entry.second


def accumulate_at_ends(
    rows: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    n_atoms: int,
    ends: Optional[PairEnds] = None,
) -> torch.Tensor:
    """``(N, k)``: each pair's row added at its second atom and subtracted at its
    first (``rows`` ``(P, k)``, overwritten). Through ``ends`` when given."""
    if ends is not None and ends.n_pairs == rows.shape[0] and rows.dim() == 2:
        return ends.accumulate(rows)
    result = torch.zeros((n_atoms, rows.shape[1]), dtype=rows.dtype, device=rows.device)
    if rows.device.type != "cpu":
        return add_at_ends_atomically(result, rows, first, second)
    result.index_put_((second,), rows, accumulate=True)
    return result.index_put_((first,), rows.neg_(), accumulate=True)


def add_at_ends_atomically(
    result: torch.Tensor, rows: torch.Tensor, first: torch.Tensor, second: torch.Tensor
) -> torch.Tensor:
    """:func:`accumulate_at_ends` off the CPU, into ``result``: ``index_add_`` adds
    with atomics there, where an accumulating ``index_put_`` sorts the indices
    first (several times slower)."""
    result.index_add_(0, second, rows)
    return result.index_add_(0, first, rows, alpha=-1.0)
