"""The real-space pairs of one rank: searched each call, or kept between steps.

Each rank sums its own atoms' pairs and its share of the pairs with ghost atoms
(:func:`~torchpme.distributed.ghosts.owned_pairs`). A :class:`PairPlan` keeps the
ghosts and the pairs found within ``cutoff + skin``, as MD codes keep a Verlet
list: while no atom has moved more than ``skin / 2`` since, every pair within the
cutoff is among them, and each call only recomputes their distances and keeps
those within the cutoff (the sum is then exactly that of a fresh search).
"""

from typing import NamedTuple, Optional

import torch

from .._core.distances import pair_distances
from ..neighbors import neighbor_pairs
from . import ghosts as ghost_atoms
from .collectives import gather_vectors, raise_everywhere, rank_and_size

__all__ = ["PairPlan", "RankPairs", "displaced", "rank_pairs", "search"]


class PairPlan(NamedTuple):
    """Ghosts and pairs of one rank, kept between steps (from
    :meth:`~torchpme.distributed.DistributedCalculator.pair_plan`).

    Attributes:
        ghosts: which atoms go where as ghosts.
        indices: ``(P, 2)`` pairs over this rank's atoms then its ghosts.
        shifts: ``(P, 3)`` their integer cell shifts.
        reference: ``(N, 3)`` this rank's positions when the plan was made.
        skin: the margin searched beyond the cutoff.
    """

    ghosts: ghost_atoms.GhostPlan
    indices: torch.Tensor
    shifts: torch.Tensor
    reference: torch.Tensor
    skin: float


class RankPairs(NamedTuple):
    """One call's pairs: ``charges`` of the local atoms then the ghosts,
    ``indices`` and ``distances`` of this rank's pairs (a half list)."""

    charges: torch.Tensor
    indices: torch.Tensor
    distances: torch.Tensor
    n_local: int


def displaced(plan: Optional[PairPlan], positions: torch.Tensor) -> bool:
    """Whether ``plan`` no longer holds every pair of ``positions``: another
    number of atoms, or an atom moved more than half the skin."""
    if plan is None:
        return False
    if plan.reference.shape != positions.shape:
        return True
    if positions.shape[0] == 0:
        return False
    moved = torch.linalg.norm(positions.detach() - plan.reference, dim=1)
    return bool(moved.max() > 0.5 * plan.skin)


def search(every: torch.Tensor, cell: torch.Tensor, radius: float, ghosts, group):
    """``(indices, shifts)`` of this rank's pairs within ``radius`` among its
    atoms then its ghosts (``every``, positions ``(N + G, 3)``); a failed search
    on any rank (coincident atoms, a list beyond the budget) raises on all."""
    indices = torch.zeros((0, 2), dtype=torch.int64, device=every.device)
    shifts = torch.zeros((0, 3), dtype=torch.int64, device=every.device)
    failure: Optional[Exception] = None
    try:
        if every.shape[0] > 0:
            indices, shifts = neighbor_pairs(every.detach(), cell.detach(), radius)
    except ValueError as error:
        failure = error
    flag = torch.tensor(
        [float(failure is not None)], dtype=torch.float64, device=every.device
    )
    raise_everywhere(gather_vectors(flag, group)[:, 0], failure, group)
    first = ghost_atoms.first_coordinates(
        every.detach(), torch.linalg.inv(cell.detach())
    )
    rank = rank_and_size(group)[0]
    return ghost_atoms.owned_pairs(indices, shifts, first, ghosts, rank)


def rank_pairs(
    charges: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    ghosts: ghost_atoms.GhostPlan,
    cutoff: float,
    plan: Optional[PairPlan],
    group,
) -> RankPairs:
    """This rank's pairs within ``cutoff``, with their ghosts exchanged
    (differentiable): searched, or taken from ``plan`` and cut at ``cutoff``."""
    both = torch.cat([positions, charges], dim=1)
    every = torch.cat([both, ghost_atoms.ghost_values(ghosts, both, group)])
    every_positions = every[:, :3]
    if plan is None:
        indices, shifts = search(every_positions, cell, cutoff, ghosts, group)
        distances = pair_distances(every_positions, cell, indices, shifts)
    else:
        distances = pair_distances(every_positions, cell, plan.indices, plan.shifts)
        within = distances.detach() < cutoff
        indices, distances = plan.indices[within], distances[within]
    return RankPairs(every[:, 3:], indices, distances, positions.shape[0])
