"""Neighbour lists for the calculators: pair indices, integer cell shifts, distances.

The calculators take a neighbour list as data (``neighbor_indices``,
``neighbor_distances``) and never build one. This module builds one, in two steps:

1. :func:`neighbor_pairs` finds the pairs ``(i, j)`` and the integer cell shifts
   ``S`` (a plain search, no gradients), with `vesin <https://luthaf.fr/vesin>`_
   when it is installed and a pure-torch brute force otherwise;
2. :func:`pair_distances` turns indices and shifts into distances in torch,

   .. math::

       r_{ij} = \\lVert \\mathbf r_j - \\mathbf r_i + \\mathbf S_{ij} \\mathbf A
       \\rVert,

   where the rows of ``A`` (``cell``) are the lattice vectors, so that autograd
   reaches ``positions`` and ``cell`` (forces and stress).

:func:`compute_neighbors` does both. For many steps on one list (MD between
rebuilds), hold it as a :class:`PairList` (``compute_neighbors(...,
as_pair_list=True)`` or ``PairList(indices, shifts)``): it keeps the contiguous
index columns, the pair incidence and the work buffer of the distances, and the
calculators take it in place of ``neighbor_indices``::

    pairs, distances = compute_neighbors(positions, cell, cutoff, as_pair_list=True)
    for step in range(n_steps):
        distances = pair_distances(positions, cell, pairs)
        energy = calculator.energy(charges, cell, positions, pairs, distances)

Conventions: a *half* list holds every
unordered pair once (an atom and its own periodic image included, once per ``±S``);
a *full* list holds both ``(i, j, S)`` and ``(j, i, −S)``. A pair is kept when
``r_ij < cutoff``; ``(i, i, 0)`` never appears. Only axes with ``periodic[d]`` true
get shifts; on the others the cell row is not used (it may be zero).
"""

import math
import warnings
from typing import List, Optional, Tuple

import numpy as np
import torch

from ._core import geometry, workload
from ._core.distances import pair_distances
from ._core.pairlist import PairList
from ._core.validation import (
    check_choice,
    check_finite,
    check_floating,
    check_like,
    check_positive,
    check_shape,
    message,
)

__all__ = [
    "PairList",
    "compute_neighbors",
    "has_vesin",
    "neighbor_pairs",
    "pair_distances",
]

# pair candidates examined at once by the brute force (bounds its memory)
_BRUTE_FORCE_CHUNK = 1 << 22
# above this many atoms "auto" without vesin warns that the search is O(N²)
_BRUTE_FORCE_WARN = 3000


def has_vesin() -> bool:
    """Whether the `vesin` neighbour-list package can be imported."""
    try:
        import vesin  # noqa: F401
    except ImportError:
        return False
    return True


def _periodic_list(
    periodic: bool | List[bool] | torch.Tensor | np.ndarray | None,
) -> List[bool]:
    if periodic is None:
        return [True, True, True]
    if isinstance(periodic, (bool, np.bool_)):
        return [bool(periodic)] * 3
    values = [bool(p) for p in torch.as_tensor(periodic).reshape(-1).tolist()]
    if len(values) != 3:
        raise ValueError(
            message("periodic", "a bool or 3 bools (one per axis)", f"{values}")
        )
    return values


def _check_inputs(positions: torch.Tensor, cell: torch.Tensor, cutoff: float) -> None:
    check_shape("positions", positions, [-1, 3], "(N, 3)")
    check_floating("positions", positions)
    check_shape("cell", cell, [3, 3], "(3, 3)")
    check_like("cell", cell, positions, "positions")
    check_positive("cutoff", cutoff)
    check_finite("positions", positions)
    check_finite("cell", cell)


def _search_cell(cell: torch.Tensor, periodic: List[bool]) -> torch.Tensor:
    """The cell used for wrapping: periodic rows as given, the other rows replaced
    by an orthonormal complement (so a zero row on a free axis is harmless)."""
    cell = cell.detach().to(torch.float64).cpu()
    rows = [cell[d] for d in range(3) if periodic[d]]
    if rows:
        if int(torch.linalg.matrix_rank(torch.stack(rows))) < len(rows):
            raise ValueError(
                message(
                    "cell",
                    "linearly independent lattice vectors on the periodic axes",
                    f"a degenerate cell {cell.tolist()}",
                )
            )
    # complete the periodic rows with an orthonormal basis of their complement
    if rows:
        complement = torch.linalg.svd(torch.stack(rows), full_matrices=True)[2]
        basis = list(complement[len(rows) :])
    else:
        basis = list(torch.eye(3, dtype=torch.float64))
    result = torch.empty(3, 3, dtype=torch.float64)
    fill = iter(basis)
    for d in range(3):
        result[d] = cell[d] if periodic[d] else next(fill)
    return result


def _brute_force_pairs(
    positions: torch.Tensor,
    cell: torch.Tensor,
    cutoff: float,
    periodic: List[bool],
    full_list: bool,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """All pairs within ``cutoff`` by checking every atom pair and image (O(N²))."""
    n_atoms = positions.shape[0]
    pos = positions.detach().to(torch.float64).cpu()
    search = _search_cell(cell, periodic)
    mask = torch.tensor(periodic, dtype=torch.float64)
    fractional = pos @ torch.linalg.inv(search)
    offset = torch.floor(fractional) * mask  # wrap only periodic axes
    wrapped = (fractional - offset) @ search
    # planes of lattice vector d are 1/|column d of inv(cell)| apart
    spacing = 1.0 / torch.linalg.norm(torch.linalg.inv(search), dim=0)
    reach = [
        math.ceil(cutoff / float(spacing[d])) + 1 if periodic[d] else 0
        for d in range(3)
    ]
    axes = [torch.arange(-r, r + 1, dtype=torch.float64) for r in reach]
    shifts = torch.cartesian_prod(*axes).reshape(-1, 3)
    translations = shifts @ search

    ii, jj = torch.meshgrid(torch.arange(n_atoms), torch.arange(n_atoms), indexing="ij")
    ii = ii.reshape(-1)
    jj = jj.reshape(-1)
    base = wrapped[jj] - wrapped[ii]  # (N², 3)
    found_pairs = []
    found_shifts = []
    per_chunk = max(1, _BRUTE_FORCE_CHUNK // max(1, ii.numel()))
    for start in range(0, shifts.shape[0], per_chunk):
        shift = shifts[start : start + per_chunk]
        vectors = base.unsqueeze(0) + translations[start : start + per_chunk, None, :]
        close = torch.linalg.norm(vectors, dim=-1) < cutoff
        s_index, p_index = torch.nonzero(close, as_tuple=True)
        found_pairs.append(p_index)
        found_shifts.append(shift[s_index])
    pair_index = torch.cat(found_pairs)
    wrapped_shift = torch.cat(found_shifts).to(torch.int64)
    first = ii[pair_index]
    second = jj[pair_index]
    # back to the unwrapped positions: S = S_w − o_j + o_i
    shift = (
        wrapped_shift - offset[second].to(torch.int64) + offset[first].to(torch.int64)
    )
    self_image = (first == second) & (wrapped_shift == 0).all(dim=1)
    keep = ~self_image
    if not full_list:
        keep = keep & ((first < second) | ((first == second) & _positive(shift)))
    indices = torch.stack([first[keep], second[keep]], dim=1)
    return indices, shift[keep]


def _positive(shift: torch.Tensor) -> torch.Tensor:
    """Whether each integer shift is lexicographically positive."""
    result = torch.zeros(shift.shape[0], dtype=torch.bool)
    undecided = torch.ones(shift.shape[0], dtype=torch.bool)
    for d in range(3):
        result = result | (undecided & (shift[:, d] > 0))
        undecided = undecided & (shift[:, d] == 0)
    return result


def _vesin_pairs(
    positions: torch.Tensor,
    cell: torch.Tensor,
    cutoff: float,
    periodic: List[bool],
    full_list: bool,
) -> Tuple[torch.Tensor, torch.Tensor]:
    import vesin

    pos = positions.detach().to(torch.float64).cpu().numpy()
    box = cell.detach().to(torch.float64).cpu().numpy()
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=full_list)
    pairs, shifts = calculator.compute(pos, box, periodic, quantities="PS")
    indices = torch.from_numpy(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    shift = torch.from_numpy(np.asarray(shifts, dtype=np.int64).reshape(-1, 3))
    return indices, shift


def _search(
    positions: torch.Tensor,
    cell: torch.Tensor,
    cutoff: float,
    periodic: bool | List[bool] | torch.Tensor | None,
    full_list: bool,
    backend: str,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`neighbor_pairs` without the check for coincident atoms."""
    _check_inputs(positions, cell, cutoff)
    check_choice("backend", backend, ["auto", "vesin", "torch"])
    flags = _periodic_list(periodic)
    if backend == "vesin" and not has_vesin():
        raise ImportError("backend='vesin' needs the vesin package: pip install vesin")
    _search_cell(cell, flags)  # rejects degenerate periodic lattice vectors
    use_vesin = backend == "vesin" or (backend == "auto" and has_vesin())
    # the estimate comes first: a tiny cell or a huge cutoff would otherwise
    # exhaust the memory (or the patience) inside the search
    workload.check_neighbor_list(positions, cell, cutoff, flags, not use_vesin)
    if use_vesin:
        indices, shifts = _vesin_pairs(positions, cell, cutoff, flags, full_list)
    else:
        if backend == "auto" and positions.shape[0] > _BRUTE_FORCE_WARN:
            warnings.warn(
                f"building a neighbour list of {positions.shape[0]} atoms by brute "
                "force (O(N²)); `pip install vesin` makes it O(N)",
                stacklevel=3,
            )
        indices, shifts = _brute_force_pairs(positions, cell, cutoff, flags, full_list)
    return indices.to(positions.device), shifts.to(positions.device)


def neighbor_pairs(
    positions: torch.Tensor,
    cell: torch.Tensor,
    cutoff: float,
    periodic: bool | List[bool] | torch.Tensor | None = None,
    full_list: bool = False,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pairs within ``cutoff`` and their integer cell shifts (no gradients).

    The pair ``(i, j)`` with shift ``S`` joins atom ``i`` to the image of ``j`` at
    ``r_j + S A``. Positions need not be wrapped into the cell.

    Before searching, the size of the list is estimated
    (:func:`torchpme._core.workload.check_neighbor_list`); a list beyond the
    memory budget is refused with a ``ValueError`` naming ``cutoff`` or
    ``positions``. Atoms closer than ``1e-4`` (coincident, images included) are
    refused too (:func:`torchpme._core.geometry.check_coincident`).

    Args:
        positions: ``(N, 3)`` Cartesian positions.
        cell: ``(3, 3)`` cell, rows are lattice vectors (rows of non-periodic axes
            are ignored and may be zero).
        cutoff: keep pairs with distance ``< cutoff``.
        periodic: ``None`` (all periodic), a bool, or 3 bools (one per axis).
        full_list: list each pair in both orders (default: half list).
        backend: ``"vesin"``, ``"torch"`` (pure-torch brute force, O(N²) per
            image, meant for small systems) or ``"auto"`` (vesin when installed).

    Returns:
        ``(indices, shifts)``: ``(P, 2)`` and ``(P, 3)`` int64 tensors on the device
        of ``positions``.
    """
    indices, shifts = _search(positions, cell, cutoff, periodic, full_list, backend)
    with torch.no_grad():
        distances = pair_distances(
            positions.detach().to(torch.float64),
            cell.detach().to(torch.float64),
            indices,
            shifts,
        )
    geometry.check_coincident(indices, distances, shifts)
    return indices, shifts


def compute_neighbors(
    positions: torch.Tensor,
    cell: Optional[torch.Tensor],
    cutoff: float,
    periodic: bool | List[bool] | torch.Tensor | None = None,
    full_list: bool = False,
    backend: str = "auto",
    return_shifts: bool = False,
    as_pair_list: bool = False,
):
    """Neighbour list ready for the calculators: indices and differentiable distances.

    Refuses, as :func:`neighbor_pairs` does, a list beyond the memory budget and
    coincident atoms.

    Example:
        >>> positions = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
        >>> indices, distances = compute_neighbors(positions, torch.eye(3), 0.9)
        >>> indices.shape, round(float(distances.min()), 4)
        (torch.Size([8, 2]), 0.866)

    Args:
        positions: ``(N, 3)`` Cartesian positions.
        cell: ``(3, 3)`` cell (rows are lattice vectors); ``None`` means no cell
            (then ``periodic`` must be false on every axis, or ``None``).
        cutoff: real-space cutoff (pairs with ``r < cutoff``).
        periodic: ``None`` (periodic on all axes if a cell is given), a bool or
            3 bools.
        full_list: full rather than half list.
        backend: ``"auto"``, ``"vesin"`` or ``"torch"`` (see :func:`neighbor_pairs`).
        return_shifts: also return the ``(P, 3)`` integer shifts.
        as_pair_list: return a :class:`PairList` (which holds the shifts) in
            place of ``neighbor_indices``.

    Returns:
        ``(neighbor_indices, neighbor_distances)`` — ``(P, 2)`` int64 (or a
        :class:`PairList`) and ``(P,)`` in the dtype of ``positions`` — and the
        shifts if ``return_shifts``.
    """
    if cell is None:
        if periodic is not None and any(_periodic_list(periodic)):
            raise ValueError(
                message("cell", "a (3, 3) cell when `periodic` is set", "None")
            )
        periodic = False
        cell = torch.zeros(3, 3, dtype=positions.dtype, device=positions.device)
    indices, shifts = _search(positions, cell, cutoff, periodic, full_list, backend)
    if as_pair_list:
        pairs = PairList(indices, shifts)
        distances = pair_distances(positions, cell, pairs)
    else:
        distances = pair_distances(positions, cell, indices, shifts)
    geometry.check_coincident(indices, distances, shifts)
    if as_pair_list:
        indices = pairs
    if return_shifts:
        return indices, distances, shifts
    return indices, distances
