"""Domains along the first lattice vector, atoms handed to their owners, and the
ghost atoms each rank needs for its real-space pairs.

Rank ``r`` of ``P`` owns the atoms whose fractional coordinate along the first
lattice vector ``s₀ = (r · cell⁻¹)₀`` (wrapped into ``[0, 1)``) lies in
``[r/P, (r+1)/P)``, the slab of space over the mesh planes it owns
(:mod:`.slabs`). :func:`migrate` sends atoms to their owners; the calculators
do not require it (an atom anywhere gives the same numbers), but it keeps the
halos and the ghost lists short.

Each pair of atoms on two ranks is computed once, by the rank of its lower
atom along ``s₀`` (a half shell): for atom ``i`` here and the image of atom
``j`` there, ``Δ = (s₀ⱼ − s₀ᵢ) + S₀`` (``S₀`` the image shift along the first
lattice vector, evaluated in this order so that swapping the atoms negates it
exactly) and the pair is this rank's when ``Δ > 0``, or ``Δ = 0`` and this rank
is the lower one (:func:`owned_pairs`). Atoms closer than ``r_c`` have ``|Δ| <
r_c / d₀``, with ``d₀ = V / |a₁ × a₂|`` the spacing of the lattice planes
spanned by the two other lattice vectors, so each rank needs as ghosts only the
atoms up to ``r_c / d₀`` above the arc of ``s₀`` its atoms occupy
(:func:`ghost_plan`); its half of a pair's potential goes home to the ghost's
owner (:func:`ghost_sums`).
"""

from typing import List, NamedTuple, Tuple

import torch

from .collectives import exchange_rows, rank_and_size

__all__ = [
    "GhostPlan",
    "domain_of",
    "first_coordinates",
    "fractional_first",
    "ghost_plan",
    "ghost_sums",
    "ghost_values",
    "migrate",
    "owned_pairs",
    "plane_spacing",
]


def fractional_first(positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """``(N,)`` fractional coordinate along the first lattice vector, in ``[0, 1)``
    (no gradient)."""
    with torch.no_grad():
        first = first_coordinates(positions, torch.linalg.inv(cell))
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
        owners: ``(G,)`` the rank of each ghost.
    """

    send_index: torch.Tensor
    send_counts: List[int]
    receive_counts: List[int]
    owners: torch.Tensor


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
        # the atoms above the destination's atoms, within the cutoff (a margin
        # below its lowest atom keeps the ties Δ = 0)
        start = (destination + 0.5) / size + low - 1e-9
        width = high - low + reach + 1e-9
        if width >= 1.0:
            near = torch.ones_like(first, dtype=torch.bool)
        else:
            near = torch.remainder(first - start, 1.0) <= width
        chosen.append(torch.nonzero(near).flatten())
    send = [len(part) for part in chosen]
    receive = _receive_counts(send, group, first.device)
    ranks = torch.arange(size, device=first.device)
    counts = torch.tensor(receive, device=first.device)
    owners = torch.repeat_interleave(ranks, counts)
    return GhostPlan(torch.cat(chosen), send, receive, owners)


def owned_pairs(
    indices: torch.Tensor,
    shifts: torch.Tensor,
    first: torch.Tensor,
    plan: GhostPlan,
    rank: int,
):
    """``(indices, shifts)``: the pairs of a half list over this rank's atoms
    then its ghosts that this rank computes: every pair of its own atoms, and
    the pairs with a ghost above (module docstring), local atom first.

    Args:
        indices, shifts: ``(P, 2)``, ``(P, 3)`` the half list.
        first: ``(N + G,)`` unwrapped ``s₀`` of the atoms then the ghosts, each
            evaluated alone (the same bits on every rank).
        plan: the :class:`GhostPlan` (``G`` ghosts, their owners).
        rank: this rank.
    """
    n_local = first.shape[0] - plan.owners.shape[0]
    local = indices < n_local
    inner = local[:, 0] & local[:, 1]
    if bool(inner.all()):  # no ghosts near (one rank): no copies
        return indices, shifts
    turned = (local[:, 1] & ~local[:, 0]).unsqueeze(1)
    indices = torch.where(turned, indices.flip(1), indices)
    shifts = torch.where(turned, -shifts, shifts)
    outer = local[:, 0] ^ local[:, 1]
    delta = (first[indices[:, 1]] - first[indices[:, 0]]) + shifts[:, 0].to(first.dtype)
    ghost = torch.clamp(indices[:, 1] - n_local, min=0)
    lower = (delta > 0) | ((delta == 0) & (plan.owners[ghost] > rank))
    keep = inner | (outer & lower)
    return indices[keep], shifts[keep]


def ghost_values(plan: GhostPlan, values: torch.Tensor, group) -> torch.Tensor:
    """``(G, ...)``: the rows of ``values`` at this rank's ghosts, grouped by the
    rank that owns them. Differentiable: the gradient of a ghost goes home."""
    outgoing = values.index_select(0, plan.send_index)
    return exchange_rows(outgoing, plan.send_counts, plan.receive_counts, group)


def ghost_sums(plan: GhostPlan, values: torch.Tensor, n_local: int, group):
    """``(n_local, ...)``: rows computed here for the ghosts (``values``, ``(G,
    ...)``) sent to their owners, and what the other ranks computed for this
    rank's atoms summed per atom (the adjoint of :func:`ghost_values`).
    Differentiable."""
    incoming = exchange_rows(values, plan.receive_counts, plan.send_counts, group)
    rows = incoming.new_zeros((n_local,) + tuple(incoming.shape[1:]))
    return rows.index_add(0, plan.send_index, incoming)


def first_coordinates(positions: torch.Tensor, inverse_cell: torch.Tensor):
    """``(N,)`` unwrapped ``s₀`` of each atom, computed row by row with the same
    operations for every row (no matrix product, whose blocking may depend on
    the number of rows), so that an atom and its ghost copy get the same bits."""
    column = inverse_cell[:, 0]
    return (
        positions[:, 0] * column[0]
        + positions[:, 1] * column[1]
        + positions[:, 2] * column[2]
    )
