"""PME and P3M of one periodic system whose atoms are split over processes."""

import zlib
from typing import List, NamedTuple, Optional

import torch

from .._core import kspace
from .._core import mesh as core_mesh
from .._core.distances import pair_distances
from .._core.pairs import neutralised_corrections
from .._core.validation import (
    check_finite,
    check_floating,
    check_invertible,
    check_like,
    check_positive,
    check_shape,
    message,
)
from ..calculators import PMECalculator
from ..lib.kspace_filter import P3MKSpaceFilter
from ..neighbors import neighbor_pairs
from . import ghosts as ghost_atoms
from . import slabs
from .collectives import (
    gather_vectors,
    raise_everywhere,
    rank_and_size,
    replicated,
    total,
)
from .convolution import slab_convolution, slab_energy

__all__ = ["DistributedCalculator"]

# the metadata every rank publishes once per call: what must agree, then where
# its atoms are (buffer planes, occupied arc of s0)
_AGREED = [
    "`cell`",
    "the mesh size",
    "the method (calculator, potential, smearing, cutoff, interpolation nodes)",
    "the dtype and the number of charge channels",
    "the inputs requiring gradients (charges, positions, cell, grad mode)",
]
_FIELDS = [9, 3, 4, 2, 4]


class _Pairs(NamedTuple):
    """This rank's real-space pairs (a half list: its own atoms' pairs and its
    share of the pairs with ghosts): ``charges`` of the local atoms then the
    ghosts, ``indices``, ``distances``."""

    charges: torch.Tensor
    indices: torch.Tensor
    distances: torch.Tensor
    n_local: int


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

    def _fingerprint(
        self, charges: torch.Tensor, cell: torch.Tensor, positions: torch.Tensor
    ) -> List[float]:
        calculator = self.calculator
        method = f"{type(calculator).__name__}/{type(calculator.potential).__name__}"
        grads = [t.requires_grad for t in (charges, positions, cell)]
        return (
            cell.detach().reshape(-1).tolist()
            + [float(n) for n in calculator._mesh_size(cell)]
            + [
                float(zlib.crc32(method.encode())),
                float(calculator.potential.smearing),
                self.cutoff,
                float(calculator.interpolation_nodes),
            ]
            + [float(charges.element_size()), float(charges.shape[1])]
            + [float(flag) for flag in grads + [torch.is_grad_enabled()]]
        )

    def _check_inputs(self, charges, cell, positions) -> None:
        for name, value in (
            ("charges", charges),
            ("cell", cell),
            ("positions", positions),
        ):
            if not isinstance(value, torch.Tensor):
                raise TypeError(message(name, "a tensor", f"{type(value).__name__}"))
        check_shape("cell", cell, [3, 3], "(3, 3)")
        check_floating("cell", cell)
        check_shape("positions", positions, [-1, 3], "(N, 3)")
        check_like("positions", positions, cell, "cell")
        check_shape("charges", charges, [positions.shape[0], -1], "(N, C)")
        check_like("charges", charges, cell, "cell")
        # values read on the host: the exchanges synchronise the ranks anyway
        for name, value in (
            ("cell", cell),
            ("positions", positions),
            ("charges", charges),
        ):
            check_finite(name, value)
        check_invertible("cell", cell)

    def _agree(self, rows: torch.Tensor) -> None:
        """Raise the same ``ValueError`` on every rank where the ranks disagree."""
        start = 0
        for what, width in zip(_AGREED, _FIELDS):
            block = rows[:, start : start + width]
            differ = [
                rank
                for rank in range(rows.shape[0])
                if not torch.equal(block[rank], block[0])
            ]
            if differ:
                raise ValueError(
                    f"{what} must be the same on every rank of the process group, "
                    f"got ranks {differ} different from rank 0"
                )
            start += width

    def _kernel(self, cell: torch.Tensor, shape: List[int], rows: List[int]):
        """This rank's band of the filter ``G(k)`` (times P3M's influence)."""
        band = rows
        k_sq = kspace.mesh_k_squared(cell, shape, band)
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
                band,
            )
        return kernel

    def _step(self, charges, cell, positions) -> _Step:
        rank, size = rank_and_size(self.group)
        width = 1 + sum(_FIELDS) + 4
        failure: Optional[Exception] = None
        try:
            self._check_inputs(charges, cell, positions)
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
                [0.0]
                + self._fingerprint(charges, cell, positions)
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
        self._agree(rows[:, 1:])
        own = width - 4
        arcs = [[int(v) for v in row[own : own + 2]] for row in rows.tolist()]
        occupied_arcs = [row[own + 2 :] for row in rows.tolist()]
        # a little more than the cutoff: an extra ghost costs nothing, a missing
        # one a wrong sum
        reach = self.cutoff / ghost_atoms.plane_spacing(cell) * (1.0 + 1e-9) + 1e-12
        charge = total(torch.sum(charges, dim=0), self.group)
        return _Step(
            cell=cell_all,
            volume=torch.abs(torch.linalg.det(cell_all)),
            layout=layout,
            plan=slabs.buffer_plan(place, self.calculator.scheme, layout, arcs[rank]),
            halo=slabs.halo_plan(arcs, layout, positions.device),
            kernel=self._kernel(cell_all, shape, layout.rows[rank : rank + 2]),
            ghosts=ghost_atoms.ghost_plan(first, occupied_arcs, reach, self.group),
            total_charge=replicated(charge, self.group),
        )

    def _pairs(self, step: _Step, charges, positions) -> _Pairs:
        """The real-space pairs of this rank's atoms, with ghosts from the other
        ranks: each pair of local atoms once, each local–ghost pair once from
        the local side (its other half is the ghost's owner's)."""
        n_local = positions.shape[0]
        both = torch.cat([positions, charges], dim=1)
        ghosts = ghost_atoms.ghost_values(step.ghosts, both, self.group)
        every = torch.cat([both, ghosts])
        every_positions = every[:, :3]
        indices = torch.zeros((0, 2), dtype=torch.int64, device=positions.device)
        shifts = torch.zeros((0, 3), dtype=torch.int64, device=positions.device)
        failure: Optional[Exception] = None
        try:
            if every.shape[0] > 0:
                indices, shifts = neighbor_pairs(
                    every_positions.detach(), step.cell.detach(), self.cutoff
                )
        except ValueError as error:  # coincident atoms, a list beyond the budget
            failure = error
        flag = torch.tensor(
            [float(failure is not None)], dtype=torch.float64, device=positions.device
        )
        raise_everywhere(gather_vectors(flag, self.group)[:, 0], failure, self.group)
        inverse = torch.linalg.inv(step.cell.detach())
        first = ghost_atoms.first_coordinates(every_positions.detach(), inverse)
        indices, shifts = ghost_atoms.owned_pairs(
            indices, shifts, first, step.ghosts, rank_and_size(self.group)[0]
        )
        distances = pair_distances(every_positions, step.cell, indices, shifts)
        return _Pairs(every[:, 3:], indices, distances, n_local)

    def _real_space(self, step: _Step, pairs: _Pairs) -> torch.Tensor:
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

    def _real_space_energy(self, pairs: _Pairs) -> torch.Tensor:
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
        self, charges: torch.Tensor, cell: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Potentials ``(N, C)`` of this rank's atoms.

        Args:
            charges: ``(N, C)`` this rank's charges.
            cell: ``(3, 3)`` the cell, rows are lattice vectors, the same on
                every rank.
            positions: ``(N, 3)`` this rank's positions.

        Returns:
            ``(N, C)``; the energy is the sum over ranks of
            ``(charges * result).sum()`` (:meth:`energy`).
        """
        step = self._step(charges, cell, positions)
        buffer = core_mesh.spread(step.plan, charges)
        filtered = slab_convolution(
            buffer, step.kernel, step.layout, step.halo, self.group
        )
        mesh = core_mesh.gather(step.plan, filtered) / step.volume
        rspace = self._real_space(step, self._pairs(step, charges, positions))
        return rspace + self._corrections(step, charges, mesh)

    def energy(
        self, charges: torch.Tensor, cell: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """The energy of the whole system, a 0-dim tensor, the same on every rank.

        Half the work of :meth:`forward` on the mesh: ``Σ_i q_i φ_i`` of the mesh
        is ``Σ_k G(k) |ρ̂(k)|²`` over the bands, so no inverse transform runs
        forward (the backward pass runs the adjoint of the forward one).

        Args:
            charges, cell, positions: as :meth:`forward`.
        """
        step = self._step(charges, cell, positions)
        buffer = core_mesh.spread(step.plan, charges)
        mesh = slab_energy(buffer, step.kernel, step.layout, step.halo, self.group)
        mesh = mesh / (2.0 * step.volume)
        pairs = self._real_space_energy(self._pairs(step, charges, positions))
        zero = torch.zeros_like(charges)
        corrections = torch.sum(charges * self._corrections(step, charges, zero))
        return total(mesh + pairs + corrections, self.group)
