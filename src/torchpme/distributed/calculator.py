"""PME and P3M of one periodic system whose atoms are split over processes."""

from typing import List, NamedTuple, Optional

import torch

from .._core import kspace
from .._core import mesh as core_mesh
from .._core.pairs import neutralised_corrections
from .._core.validation import (
    check_finite_number,
    check_positive,
    message,
)
from ..calculators import PMECalculator
from ..lib.kspace_filter import P3MKSpaceFilter
from . import ghosts as ghost_atoms
from . import slabs
from .agreement import FIELDS, agree, check_inputs, fingerprint
from .collectives import (
    gather_vectors,
    raise_everywhere,
    rank_and_size,
    replicated,
    total,
)
from .convolution import slab_convolution, slab_energy
from .pairs import PairPlan, RankPairs, displaced, rank_pairs, search

__all__ = ["DistributedCalculator"]


class _Step(NamedTuple):
    """One call's plans and replicated values, shared by ``forward`` and
    ``energy``."""

    cell: torch.Tensor
    volume: torch.Tensor
    layout: slabs.SlabLayout
    plan: core_mesh.MeshPlan
    halo: slabs.HaloPlan
    kernel: torch.Tensor
    ghosts: ghost_atoms.GhostPlan
    total_charge: torch.Tensor


class DistributedCalculator(torch.nn.Module):
    """PME or P3M of one periodic system whose atoms are split over the ranks of
    a ``torch.distributed`` process group.

    Every rank passes its own atoms; the result is what ``calculator`` gives for
    the whole system in one process (up to the order of the sums):

    .. math::

        V_i = \\tfrac12 \\sum_{j,\\mathbf n} q_j\\, v_{\\rm sr}(|\\mathbf r_{ij} +
        \\mathbf n|) + V_i^{\\rm mesh}, \\qquad E = \\sum_i q_i V_i.

    The mesh is cut into slabs of planes along the first lattice vector, one per
    rank, and the transforms into bands (:mod:`torchpme.distributed.slabs`); the
    real-space pairs use ghost atoms from the other ranks within ``cutoff``
    (:mod:`torchpme.distributed.ghosts`). Atoms may be anywhere: the domains of
    :func:`~torchpme.distributed.migrate` keep the halos and ghost lists short.
    Gradients run across the ranks (:mod:`torchpme.distributed.collectives`):
    ``energy(...).backward()`` on every rank gives each rank the forces on its
    atoms and the gradient of its charges, and the whole cell gradient on every
    rank. Every rank must make the same calls (forward and backward) in the
    same order, with the same cell, and the same inputs requiring gradients:
    this is checked at each call, and a disagreement raises the same
    ``ValueError`` on every rank. Gradients of parameters of the potential are
    each rank's share: sum them over the ranks (``dist.all_reduce``).

    Args:
        calculator: a :class:`~torchpme.PMECalculator` or
            :class:`~torchpme.P3MCalculator` with a range-separated potential
            (``smearing`` set); its mesh (``mesh_spacing`` or ``fixed_mesh``) and
            interpolation are used as they are.
        cutoff: the real-space cutoff.
        group: the process group (``None``: the default group; without an
            initialised group, one process).

    Example:
        CsCl (one ion pair in a cubic cell): the Madelung constant 1.762675 over
        the nearest-neighbour distance ``2√3``, −0.50884; in one process here,
        the same call on every rank of a group under ``torchrun``.

        >>> from torchpme import CoulombPotential, PMECalculator
        >>> pme = PMECalculator(CoulombPotential(smearing=0.5), mesh_spacing=0.5)
        >>> calculator = DistributedCalculator(pme, cutoff=3.0)
        >>> cell = 4.0 * torch.eye(3, dtype=torch.float64)
        >>> positions = torch.tensor([[0.0, 0, 0], [2.0, 2, 2]], dtype=torch.float64)
        >>> charges = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
        >>> round(float(calculator.energy(charges, cell, positions)), 5)
        -0.50884
    """

    def __init__(
        self, calculator: PMECalculator, cutoff: float, group: Optional[object] = None
    ):
        super().__init__()
        if not isinstance(calculator, PMECalculator):
            raise TypeError(
                message(
                    "calculator",
                    "a PMECalculator or P3MCalculator",
                    f"{type(calculator).__name__}",
                )
            )
        if calculator.potential.smearing is None:
            raise ValueError(
                message(
                    "calculator",
                    "a range-separated potential (smearing set)",
                    "a potential without smearing",
                )
            )
        check_positive("cutoff", cutoff)
        self.calculator = calculator
        self.cutoff = float(cutoff)
        self.group = group

    def _kernel(self, cell: torch.Tensor, shape: List[int], rows: List[int]):
        """This rank's band of the filter ``G(k)`` (times P3M's influence)."""
        k_sq = kspace.mesh_k_squared(cell, shape, rows)
        kernel = self.calculator.potential.kernel_from_k_sq(k_sq)
        kfilter = self.calculator.kspace_filter
        if isinstance(kfilter, P3MKSpaceFilter):
            kernel = kernel * kspace.p3m_influence(
                cell,
                shape,
                kfilter.interpolation_nodes,
                kfilter.mode,
                kfilter._differences,
                kfilter.cartesian_influence,
                rows,
            )
        return kernel

    def _step(self, charges, cell, positions, pairs: Optional[PairPlan]) -> _Step:
        rank, size = rank_and_size(self.group)
        width = 2 + sum(FIELDS) + 4
        failure: Optional[Exception] = None
        try:
            check_inputs(charges, cell, positions)
            shape = self.calculator._mesh_size(cell)
            cell_all = replicated(cell, self.group)
            place = core_mesh.placement(
                positions,
                torch.linalg.inv(cell_all),
                shape,
                self.calculator.interpolation_nodes,
            )
            layout = slabs.slab_layout(shape, rank, size)
            planes = torch.div(
                place.stencil[:, 0], shape[1] * shape[2], rounding_mode="floor"
            )
            first = ghost_atoms.fractional_first(positions, cell)
            row = (
                [0.0, float(displaced(pairs, positions))]
                + fingerprint(self.calculator, self.cutoff, charges, cell, positions)
                + slabs.plane_arc(planes, layout)
                + ghost_atoms.occupied_arc(first, rank, size)
            )
        except (TypeError, ValueError) as error:
            # the other ranks wait in the gather below: they learn of it there
            failure, row = error, [1.0] * width
        device = cell.device if isinstance(cell, torch.Tensor) else None
        rows = gather_vectors(
            torch.tensor(row, dtype=torch.float64, device=device), self.group
        )
        raise_everywhere(rows[:, 0], failure, self.group)
        stale = [r for r, flag in enumerate(rows[:, 1].tolist()) if flag != 0.0]
        if stale:
            raise ValueError(
                message(
                    "pairs",
                    "a plan holding every pair (refresh it each step with "
                    "pair_plan(cell, positions, skin, previous=pairs))",
                    f"atoms moved more than half the skin on ranks {stale}",
                )
            )
        agree(rows[:, 2:])
        own = width - 4
        arcs = [[int(v) for v in row[own : own + 2]] for row in rows.tolist()]
        occupied_arcs = [row[own + 2 :] for row in rows.tolist()]
        if pairs is None:
            ghosts = ghost_atoms.ghost_plan(
                first, occupied_arcs, self._reach(cell, 0.0), self.group
            )
        else:
            ghosts = pairs.ghosts
        charge = total(torch.sum(charges, dim=0), self.group)
        return _Step(
            cell=cell_all,
            volume=torch.abs(torch.linalg.det(cell_all)),
            layout=layout,
            plan=slabs.buffer_plan(place, self.calculator.scheme, layout, arcs[rank]),
            halo=slabs.halo_plan(arcs, layout, positions.device),
            kernel=self._kernel(cell_all, shape, layout.rows[rank : rank + 2]),
            ghosts=ghosts,
            total_charge=replicated(charge, self.group),
        )

    def _reach(self, cell: torch.Tensor, skin: float) -> float:
        """The cutoff (plus ``skin``) in units of ``s₀``, a little more: an
        extra ghost costs nothing, a missing one a wrong sum."""
        spacing = ghost_atoms.plane_spacing(cell)
        return (self.cutoff + skin) / spacing * (1.0 + 1e-9) + 1e-12

    def pair_plan(
        self,
        cell: torch.Tensor,
        positions: torch.Tensor,
        skin: float = 1.0,
        previous: Optional[PairPlan] = None,
    ) -> PairPlan:
        """Ghosts and pairs within ``cutoff + skin``, to pass as ``pairs=`` to
        :meth:`forward` and :meth:`energy` while no atom has moved more than
        ``skin / 2`` (a Verlet list): each call then recomputes only the pairs'
        distances. Call it every step with ``previous``: it returns
        ``previous`` while it holds on every rank, else a new plan (and after
        :func:`~torchpme.distributed.migrate`, which changes the atoms).

        Args:
            cell: ``(3, 3)`` the cell, the same on every rank.
            positions: ``(N, 3)`` this rank's positions.
            skin: the margin beyond the cutoff (length).
            previous: the plan of an earlier step, or ``None``.

        Returns:
            A :class:`~torchpme.distributed.pairs.PairPlan`.
        """
        rank, size = rank_and_size(self.group)
        failure: Optional[Exception] = None
        try:
            check_inputs(positions[:, :1], cell, positions)
            check_finite_number("skin", skin)
            if skin < 0:
                raise ValueError(message("skin", "a length >= 0", f"{skin}"))
            first = ghost_atoms.fractional_first(positions, cell)
            row = [0.0, float(previous is None or displaced(previous, positions))]
            row += ghost_atoms.occupied_arc(first, rank, size)
        except (TypeError, ValueError) as error:
            failure, row = error, [1.0] * 4
        device = cell.device if isinstance(cell, torch.Tensor) else None
        rows = gather_vectors(
            torch.tensor(row, dtype=torch.float64, device=device), self.group
        )
        raise_everywhere(rows[:, 0], failure, self.group)
        if previous is not None and not bool(rows[:, 1].any()):
            return previous
        arcs = rows[:, 2:].tolist()
        ghosts = ghost_atoms.ghost_plan(
            first, arcs, self._reach(cell, skin), self.group
        )
        fixed = positions.detach()
        every = torch.cat([fixed, ghost_atoms.ghost_values(ghosts, fixed, self.group)])
        radius = self.cutoff + skin
        indices, shifts = search(every, cell, radius, ghosts, self.group)
        return PairPlan(ghosts, indices, shifts, fixed.clone(), float(skin))

    def _rank_pairs(self, step: _Step, charges, positions, plan) -> RankPairs:
        cutoff = self.cutoff
        return rank_pairs(
            charges, step.cell, positions, step.ghosts, cutoff, plan, self.group
        )

    def _real_space(self, step: _Step, pairs: RankPairs) -> torch.Tensor:
        """``(N, C)``: the pair part of the local atoms' potentials (the ghosts'
        halves of this rank's pairs go home)."""
        potentials = self.calculator._compute_rspace(
            pairs.charges, pairs.indices, pairs.distances, None, False
        )
        n_local = pairs.n_local
        returned = ghost_atoms.ghost_sums(
            step.ghosts, potentials[n_local:], n_local, self.group
        )
        return potentials[:n_local] + returned

    def _real_space_energy(self, pairs: RankPairs) -> torch.Tensor:
        """``Σ q_i q_j v(r_ij)`` over this rank's pairs."""
        return self.calculator._rspace_energy(
            pairs.charges,
            pairs.indices,
            pairs.distances,
            None,
            full_neighbor_list=False,
        )

    def _corrections(self, step: _Step, charges, mesh) -> torch.Tensor:
        potential = self.calculator.potential
        return 0.5 * neutralised_corrections(
            mesh,
            charges,
            step.volume,
            potential.self_contribution(),
            potential.background_correction(),
            step.total_charge,
        )

    def forward(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        pairs: Optional[PairPlan] = None,
    ) -> torch.Tensor:
        """Potentials ``(N, C)`` of this rank's atoms.

        Args:
            charges: ``(N, C)`` this rank's charges.
            cell: ``(3, 3)`` the cell, rows are lattice vectors, the same on
                every rank.
            positions: ``(N, 3)`` this rank's positions.
            pairs: a plan from :meth:`pair_plan` (else the pairs are searched).

        Returns:
            ``(N, C)``; the energy is the sum over ranks of
            ``(charges * result).sum()`` (:meth:`energy`).
        """
        step = self._step(charges, cell, positions, pairs)
        buffer = core_mesh.spread(step.plan, charges)
        filtered = slab_convolution(
            buffer, step.kernel, step.layout, step.halo, self.group
        )
        mesh = core_mesh.gather(step.plan, filtered) / step.volume
        rspace = self._real_space(
            step, self._rank_pairs(step, charges, positions, pairs)
        )
        return rspace + self._corrections(step, charges, mesh)

    def energy(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        pairs: Optional[PairPlan] = None,
    ) -> torch.Tensor:
        """The energy of the whole system, a 0-dim tensor, the same on every rank.

        Half the work of :meth:`forward` on the mesh: ``Σ_i q_i φ_i`` of the mesh
        is ``Σ_k G(k) |ρ̂(k)|²`` over the bands, so no inverse transform runs
        forward (the backward pass runs the adjoint of the forward one).

        Args:
            charges, cell, positions, pairs: as :meth:`forward`.
        """
        step = self._step(charges, cell, positions, pairs)
        buffer = core_mesh.spread(step.plan, charges)
        mesh = slab_energy(buffer, step.kernel, step.layout, step.halo, self.group)
        mesh = mesh / (2.0 * step.volume)
        pair_energy = self._real_space_energy(
            self._rank_pairs(step, charges, positions, pairs)
        )
        zero = torch.zeros_like(charges)
        corrections = torch.sum(charges * self._corrections(step, charges, zero))
        return total(mesh + pair_energy + corrections, self.group)
