"""A neighbour list as a value the caller holds: :class:`PairList`.

An MD run evaluates many steps on one neighbour list (until atoms move by more than
the skin), and one step uses the list several times (distances, the pair sum,
their backward passes). A :class:`PairList` is built once per list and passed to
:func:`torchpme.neighbors.pair_distances` and to the calculators in place of
``neighbor_indices``; it holds what is derived from the indices alone:

* the contiguous index columns ``first``, ``second`` (every gather and
  accumulation over pairs needs them contiguous; a column of ``(P, 2)`` is
  strided), int32 on CPU when the indices fit (half the memory, and gathers and
  accumulations on CPU are as fast or faster with them);
* on CPU, for long lists whose distances are differentiated a second time, the
  pair-to-atom incidence as two sparse CSR matrices (:class:`PairEnds`), so that
  accumulating per-pair rows at both ends of each pair (the forces of a distance
  backward) is a multithreaded sparse product instead of a serial indexed
  accumulation (from :data:`~torchpme._core.defaults.MIN_SPARSE_PAIRS` pairs on);
* the ``(P, 3)`` work buffer of the distance function, handed from one step to
  the next once the previous step is done with it.

Nothing is kept anywhere else: a calculator given plain ``neighbor_indices``
derives the columns on each call.
"""

import threading
import warnings
import weakref
from typing import Dict, Optional, Tuple

import torch

from . import defaults
from .validation import check_device, message

__all__ = ["PairEnds", "PairList", "columns", "index_columns", "indices_of"]


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


def index_columns(neighbor_indices: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(first, second)``: the columns of ``(P, 2)`` pair indices as contiguous
    tensors of their dtype (fresh copies, made on each call)."""
    return neighbor_indices[:, 0].contiguous(), neighbor_indices[:, 1].contiguous()


def _column_dtype(indices: torch.Tensor) -> torch.dtype:
    """int32 for CPU indices in ``[0, 2³¹)`` (read once, at construction), else
    the dtype of ``indices`` (no host read on accelerators)."""
    if indices.device.type != "cpu" or indices.dtype != torch.int64:
        return indices.dtype
    if indices.numel() == 0:
        return torch.int32
    low, high = torch.aminmax(indices)
    return torch.int32 if bool(low >= 0) and bool(high < 2**31) else indices.dtype


def _column(indices: torch.Tensor, which: int, dtype: torch.dtype) -> torch.Tensor:
    # a copy whatever the layout: the list does not change with ``indices``
    return indices[:, which].to(
        dtype=dtype, memory_format=torch.contiguous_format, copy=True
    )


class PairList:
    """A neighbour list built once and passed to every step that uses it.

    Holds the ``(P, 2)`` pair indices ``(i, j)``, their ``(P, 3)`` integer cell
    shifts ``S`` (the pair joins atom ``i`` to the image of ``j`` at
    ``r_j + S A``) and what is derived from them: contiguous index columns
    (int32 on CPU), the pair-to-atom incidence for the distance backward on long
    CPU lists, and the distance function's work buffer. Give it to
    :func:`torchpme.neighbors.pair_distances` and, in place of
    ``neighbor_indices``, to a calculator's ``forward``, ``energy`` or
    ``forward_batch`` (eager mode; TorchScript takes the index tensor). Build a
    new one when the list is rebuilt; the list does not follow later in-place
    changes of ``indices``.

    Args:
        indices: ``(P, 2)`` integer pair indices.
        shifts: ``(P, 3)`` integer cell shifts, or ``None`` for no shifts.

    Example:
        >>> import torch
        >>> from torchpme.neighbors import PairList, pair_distances
        >>> pairs = PairList(torch.tensor([[0, 1]]), torch.tensor([[0, 0, 1]]))
        >>> positions = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
        >>> pair_distances(positions, torch.eye(3), pairs)
        tensor([1.5000])
    """

    def __init__(self, indices: torch.Tensor, shifts: Optional[torch.Tensor] = None):
        if not isinstance(indices, torch.Tensor) or indices.dim() != 2:
            raise ValueError(message("indices", "a (P, 2) tensor", _describe(indices)))
        if indices.shape[1] != 2 or indices.is_floating_point():
            raise ValueError(message("indices", "(P, 2) integers", _describe(indices)))
        n_pairs = indices.shape[0]
        if shifts is None:
            shifts = torch.zeros((n_pairs, 3), dtype=torch.int64, device=indices.device)
        if not isinstance(shifts, torch.Tensor) or list(shifts.shape) != [n_pairs, 3]:
            raise ValueError(
                message("shifts", f"a ({n_pairs}, 3) tensor", _describe(shifts))
            )
        check_device("shifts", shifts, indices.device, "on the device of `indices`")
        self.indices = indices
        self.shifts = shifts
        dtype = _column_dtype(indices)
        self.first = _column(indices, 0, dtype)
        self.second = _column(indices, 1, dtype)
        self._ends: Dict[int, Optional[PairEnds]] = {}
        self._rows: Dict[torch.dtype, Tuple[torch.Tensor, weakref.ref]] = {}
        self._lock = threading.Lock()  # one owner of the work buffer at a time

    def __len__(self) -> int:
        return self.first.shape[0]

    def __repr__(self) -> str:
        return f"PairList({len(self)} pairs, {self.indices.device})"

    def pair_rows(self, dtype: torch.dtype, owner) -> torch.Tensor:
        """A ``(P, 3)`` work buffer for ``owner``, an autograd context that keeps it
        as ``owner.vectors`` (then ``owner.busy`` while its backward pass runs)
        until it is done with it.

        The buffer of the previous step is handed out again once its owner is done
        with it (or gone): a fresh buffer this large costs its page faults on
        every step, a large share of the distance computation for millions of
        pairs.
        """
        with self._lock:
            kept = self._rows.get(dtype)
            if kept is not None:
                buffer, previous = kept
                holder = previous()
                if holder is None or not _holds(holder, buffer):
                    return self._claim(dtype, buffer, owner)
            buffer = torch.empty((len(self), 3), dtype=dtype, device=self.first.device)
            return self._claim(dtype, buffer, owner)

    def _claim(self, dtype: torch.dtype, buffer: torch.Tensor, owner) -> torch.Tensor:
        # stored under the lock: no other thread sees the buffer free in between
        owner.vectors = buffer
        self._rows[dtype] = (buffer, weakref.ref(owner))
        return buffer

    def pair_ends(self, n_atoms: int) -> Optional[PairEnds]:
        """The :class:`PairEnds` of the list on ``n_atoms`` atoms, built on the
        second request (a list differentiated once does not pay the setup);
        ``None`` on the first request, off CPU and for short lists."""
        n_pairs = len(self)
        if (
            self.first.device.type != "cpu"
            or n_pairs < defaults.MIN_SPARSE_PAIRS
            or max(n_pairs, n_atoms) >= 2**31
        ):
            return None
        if n_atoms not in self._ends:
            self._ends[n_atoms] = None  # seen once
            return None
        ends = self._ends[n_atoms]
        if ends is None:
            ends = PairEnds(self.first, self.second, n_atoms)
            self._ends[n_atoms] = ends
        return ends


def _holds(holder, buffer: torch.Tensor) -> bool:
    held = [getattr(holder, name, None) for name in ("vectors", "busy")]
    return any(tensor is buffer for tensor in held)


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)} and dtype {value.dtype}"
    return f"{type(value).__name__}"


@torch.jit.unused
def indices_of(neighbor_indices: torch.Tensor) -> torch.Tensor:
    """The ``(P, 2)`` index tensor of a :class:`PairList`, or the tensor itself
    (eager mode: TorchScript takes tensors only)."""
    if isinstance(neighbor_indices, PairList):
        return neighbor_indices.indices
    return neighbor_indices


def columns(neighbor_indices) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(first, second)`` contiguous columns: those a :class:`PairList` holds, or
    fresh ones of a ``(P, 2)`` tensor."""
    if isinstance(neighbor_indices, PairList):
        return neighbor_indices.first, neighbor_indices.second
    return index_columns(neighbor_indices)
