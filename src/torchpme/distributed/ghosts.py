"""Domains along the first lattice vector, atoms handed to their owners, and the
ghost atoms each rank needs for its real-space pairs.

Rank ``r`` of ``P`` owns the atoms whose fractional coordinate along the first
lattice vector ``s₀ = (r · cell⁻¹)₀`` (wrapped into ``[0, 1)``) lies in
``[r/P, (r+1)/P)``, the slab of space over the mesh planes it owns
(:mod:`.slabs`). :func:`migrate` sends atoms to their owners; the calculators
do not require it (an atom anywhere gives the same numbers), but it keeps the
halos and the ghost lists short.

Ghosts: atom ``i`` and an image of atom ``j`` closer than ``r_c`` have
``|Δs₀| < r_c / d₀``, with ``d₀ = V / |a₁ × a₂|`` the spacing of the lattice
planes spanned by the two other lattice vectors. Each rank publishes the arc of
``s₀`` its atoms occupy; every other rank sends it the atoms within ``r_c / d₀``
of that arc, once each (periodic images are the neighbour search's business).
"""

from typing import List, NamedTuple, Tuple

import torch

from .collectives import exchange_rows, rank_and_size

__all__ = [
    "GhostPlan",
    "domain_of",
    "fractional_first",
    "ghost_plan",
    "ghost_values",
    "migrate",
    "plane_spacing",
]


def fractional_first(positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """``(N,)`` fractional coordinate along the first lattice vector, in ``[0, 1)``
    (no gradient)."""
    with torch.no_grad():
        first = (positions @ torch.linalg.inv(cell))[:, 0]
        return torch.remainder(first, 1.0)


def plane_spacing(cell: torch.Tensor) -> float:
    """``d₀ = V / |a₁ × a₂|``: the distance between lattice planes of constant
    ``s₀``."""
    with torch.no_grad():
        normal = torch.linalg.cross(cell[1], cell[2])
        return float(torch.abs(torch.linalg.det(cell)) / torch.linalg.norm(normal))


def domain_of(positions: torch.Tensor, cell: torch.Tensor, size: int) -> torch.Tensor:
    """``(N,)`` int64: the rank of ``size`` that owns each atom."""
    owner = torch.floor(fractional_first(positions, cell) * size).to(torch.int64)
    return owner.clamp_(0, size - 1)


def _counts(owner: torch.Tensor, size: int) -> List[int]:
    return torch.bincount(owner, minlength=size).tolist()


def _receive_counts(send: List[int], group, device: torch.device) -> List[int]:
    """What every rank sends here, from what this rank sends everywhere (on the
    atoms' device: NCCL moves device tensors only)."""
    outgoing = torch.tensor(send, dtype=torch.int64, device=device)
    return exchange_rows(outgoing, [1] * len(send), [1] * len(send), group).tolist()


def migrate(
    positions: torch.Tensor, *values: torch.Tensor, cell: torch.Tensor, group=None
) -> Tuple[torch.Tensor, ...]:
    """Hand every atom to the rank whose domain holds it.

    Call it on every rank, between steps (or whenever atoms have moved far),
    with every per-atom array to keep with the atoms.

    Args:
        positions: ``(N, 3)`` this rank's atoms.
        values: per-atom arrays ``(N, ...)`` (charges, velocities, species, ids).
        cell: ``(3, 3)`` the cell, the same on every rank.
        group: the process group (``None``: the default one).

    Returns:
        ``(positions, *values)`` of the atoms this rank now owns, grouped by the
        rank they came from (each group in its old order). Differentiable.
    """
    _, size = rank_and_size(group)
    owner = domain_of(positions, cell, size)
    order = torch.argsort(owner, stable=True)
    send = _counts(owner, size)
    receive = _receive_counts(send, group, positions.device)
    return tuple(
        exchange_rows(array.index_select(0, order), send, receive, group)
        for array in (positions, *values)
    )


class GhostPlan(NamedTuple):
    """Which local atoms go to which rank as ghosts (built per neighbour-list
    update; the exchange itself is :func:`ghost_values`).

    Attributes:
        send_index: local atoms to send, grouped by destination rank.
        send_counts: atoms for each rank.
        receive_counts: ghosts from each rank.
    """

    send_index: torch.Tensor
    send_counts: List[int]
    receive_counts: List[int]


def occupied_arc(first: torch.Tensor, rank: int, size: int) -> List[float]:
    """``[low, high]``: the ``s₀`` of this rank's atoms, relative to the centre of
    its domain and wrapped into ``[-½, ½)``; ``[1, -1]`` (empty) without atoms."""
    if first.numel() == 0:
        return [1.0, -1.0]
    centre = (rank + 0.5) / size
    relative = torch.remainder(first - centre + 0.5, 1.0) - 0.5
    return [float(relative.min()), float(relative.max())]


def ghost_plan(
    first: torch.Tensor,
    arcs: List[List[float]],
    reach: float,
    group,
) -> GhostPlan:
    """The :class:`GhostPlan` of this rank.

    Args:
        first: ``(N,)`` ``s₀`` of this rank's atoms (:func:`fractional_first`).
        arcs: every rank's :func:`occupied_arc`.
        reach: ``r_c / d₀``, the cutoff in units of ``s₀``.
        group: the process group.
    """
    rank, size = rank_and_size(group)
    chosen: List[torch.Tensor] = []
    for destination in range(size):
        low, high = arcs[destination]
        if destination == rank or low > high:
            chosen.append(first.new_zeros(0, dtype=torch.int64))
            continue
        start = (destination + 0.5) / size + low - reach
        width = high - low + 2.0 * reach
        if width >= 1.0:
            near = torch.ones_like(first, dtype=torch.bool)
        else:
            near = torch.remainder(first - start, 1.0) <= width
        chosen.append(torch.nonzero(near).flatten())
    send = [len(part) for part in chosen]
    return GhostPlan(
        torch.cat(chosen), send, _receive_counts(send, group, first.device)
    )


def ghost_values(plan: GhostPlan, values: torch.Tensor, group) -> torch.Tensor:
    """``(G, ...)``: the rows of ``values`` at this rank's ghosts, grouped by the
    rank that owns them. Differentiable: the gradient of a ghost goes home."""
    outgoing = values.index_select(0, plan.send_index)
    return exchange_rows(outgoing, plan.send_counts, plan.receive_counts, group)
