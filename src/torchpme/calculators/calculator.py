"""``Calculator``: real-space pair sums, and the frame every k-space method fills in."""

from typing import Optional

import torch

from .._core.pairs import neutralised_corrections, pair_sum
from .._core.shortrange import coulomb_pair_sum
from .._core.validation import check_shape, message
from .._utils import _validate_parameters
from ..potentials import CoulombPotential, Potential

__all__ = ["Calculator"]


class Calculator(torch.nn.Module):
    """Per-atom potentials from a pair potential, summed over a neighbour list.

    ``V_i = ½ Σ_j q_j v(r_ij)`` over the neighbours ``j`` of ``i`` (periodic images
    included), so that the energy is ``E = Σ_i q_i V_i`` without further halving.
    Without a smearing the bare potential is summed (direct, non-periodic
    evaluation); with one, the short-range part is summed here and subclasses add
    the long-range part in reciprocal space (:meth:`_compute_kspace`).

    Args:
        potential: the pair :class:`~torchpme.potentials.Potential`.
        full_neighbor_list: ``True`` if every pair is listed as ``(i, j)`` and
            ``(j, i)``; ``False`` (default) for a half list.

    Example:
        >>> from torchpme import CoulombPotential
        >>> calculator = Calculator(CoulombPotential())
        >>> charges = torch.tensor([[1.0], [-1.0]])
        >>> pairs = torch.tensor([[0, 1]])
        >>> calculator(charges, torch.eye(3), torch.zeros(2, 3), pairs,
        ...            torch.tensor([2.0]))
        tensor([[-0.2500],
                [ 0.2500]])
    """

    def __init__(self, potential: Potential, full_neighbor_list: bool = False):
        super().__init__()
        if not isinstance(potential, Potential):
            raise TypeError(
                message("potential", "a torchpme Potential", f"{type(potential)}")
            )
        self.potential = potential
        self.full_neighbor_list: bool = full_neighbor_list

    def _compute_rspace(
        self,
        charges: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        pair_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Half the pair sum of the short-range (or bare) potential, ``(N, C)``."""
        if not torch.jit.is_scripting():
            fused = self._fused_rspace(
                charges, neighbor_indices, neighbor_distances, pair_mask
            )
            if fused is not None:
                return fused
        with torch.profiler.record_function("compute bare potential"):
            if self.potential.smearing is None:
                values = self.potential.from_dist(neighbor_distances, pair_mask)
                if self.potential.exclusion_radius is not None:
                    values = values * (
                        1.0 - self.potential.f_cutoff(neighbor_distances, pair_mask)
                    )
            else:
                values = self.potential.sr_from_dist(neighbor_distances, pair_mask)
        with torch.profiler.record_function("assign potential"):
            return pair_sum(charges, neighbor_indices, values, self.full_neighbor_list)

    @torch.jit.unused
    def _fused_rspace(
        self,
        charges: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        pair_mask: Optional[torch.Tensor],
    ) -> Optional[torch.Tensor]:
        """The fused Coulomb pair sum where it applies (a plain range-separated
        Coulomb potential whose parameters need no gradient), else ``None``."""
        potential = self.potential
        smearing = potential.smearing
        if (
            type(potential) is not CoulombPotential
            or smearing is None
            or smearing.requires_grad
            or potential.prefactor.requires_grad
            or potential.exclusion_radius is not None
            or pair_mask is not None
        ):
            return None
        return coulomb_pair_sum(
            charges,
            neighbor_indices,
            neighbor_distances,
            smearing,
            potential.prefactor,
            self.full_neighbor_list,
        )

    def _compute_kspace(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
        kvectors: Optional[torch.Tensor] = None,
        node_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        raise NotImplementedError(
            "the base Calculator has no reciprocal-space part: use EwaldCalculator, "
            "PMECalculator or P3MCalculator for a range-separated potential"
        )

    def _check_kspace_inputs(
        self, node_mask: Optional[torch.Tensor], kvectors: Optional[torch.Tensor]
    ) -> None:
        """Reject, before any work, inputs this method cannot use (none here)."""
        pass

    def _finish_kspace(
        self,
        potential: torch.Tensor,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        periodic: Optional[torch.Tensor],
        node_mask: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Self, background and slab corrections and the final ½, shared by all
        reciprocal-space methods. ``potential`` is the k-space sum already
        divided by the volume."""
        volume = torch.abs(torch.linalg.det(cell))
        potential = neutralised_corrections(
            potential,
            charges,
            volume,
            self.potential.self_contribution(),
            self.potential.background_correction(),
            torch.sum(charges, dim=0),
        )
        potential = potential + self.potential.pbc_correction(
            periodic, positions, cell, charges
        )
        if node_mask is not None:
            potential = potential * node_mask.unsqueeze(-1)
        return potential / 2.0

    def forward(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
        node_mask: Optional[torch.Tensor] = None,
        pair_mask: Optional[torch.Tensor] = None,
        kvectors: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Per-atom potentials ``(N, C)``.

        Args:
            charges: ``(N, C)`` charges (or any per-atom weights), C channels.
            cell: ``(3, 3)`` cell, rows are lattice vectors.
            positions: ``(N, 3)`` Cartesian positions.
            neighbor_indices: ``(P, 2)`` neighbour pairs ``(i, j)``.
            neighbor_distances: ``(P,)`` pair distances (of the periodic images).
            periodic: ``(3,)`` bools; with exactly two ``True`` the 2-D slab
                correction is applied for Coulomb potentials.
            node_mask: ``(N,)`` bools, ``False`` for padding atoms (Ewald only).
            pair_mask: ``(P,)`` bools, ``False`` for padding pairs.
            kvectors: ``(K, 3)`` precomputed k-vectors (Ewald only).

        Returns:
            ``(N, C)`` potentials; the energy is ``(charges * result).sum()``.
        """
        _validate_parameters(
            charges,
            cell,
            positions,
            neighbor_indices,
            neighbor_distances,
            periodic,
            pair_mask,
            node_mask,
            kvectors,
            cell_required=self.potential.smearing is not None,
        )
        self._check_kspace_inputs(node_mask, kvectors)
        rspace = self._compute_rspace(
            charges, neighbor_indices, neighbor_distances, pair_mask
        )
        if self.potential.smearing is None:
            return rspace
        return rspace + self._compute_kspace(
            charges=charges,
            cell=cell,
            positions=positions,
            periodic=periodic,
            kvectors=kvectors,
            node_mask=node_mask,
        )

    @torch.jit.unused
    def energy(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
        pair_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The energy ``E = Σ_ic q_ic V_ic``, a 0-dim tensor.

        The same number as ``(charges * self(...)).sum()``; mesh calculators
        differentiate it faster where :meth:`forward` cannot tell that its
        gradient comes from an energy (on accelerators, and under
        ``torch.compile``): the backward pass of the mesh part then runs no
        transform. Arguments as :meth:`forward` (not available in TorchScript).

        Example:
            >>> from torchpme import CoulombPotential
            >>> calculator = Calculator(CoulombPotential())
            >>> charges = torch.tensor([[1.0], [-1.0]])
            >>> pairs = torch.tensor([[0, 1]])
            >>> calculator.energy(charges, torch.eye(3), torch.zeros(2, 3), pairs,
            ...                   torch.tensor([2.0]))
            tensor(-0.5000)
        """
        _validate_parameters(
            charges,
            cell,
            positions,
            neighbor_indices,
            neighbor_distances,
            periodic,
            pair_mask,
            cell_required=self.potential.smearing is not None,
        )
        rspace = self._compute_rspace(
            charges, neighbor_indices, neighbor_distances, pair_mask
        )
        energy = torch.sum(charges * rspace)
        if self.potential.smearing is None:
            return energy
        return energy + self._kspace_energy(charges, cell, positions, periodic)

    @torch.jit.unused
    def _kspace_energy(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        periodic: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """``Σ q · _compute_kspace(...)``; mesh methods override it."""
        potential = self._compute_kspace(
            charges=charges, cell=cell, positions=positions, periodic=periodic
        )
        return torch.sum(charges * potential)

    @torch.jit.unused
    def forward_batch(
        self,
        charges: torch.Tensor,
        cells: torch.Tensor,
        positions: torch.Tensor,
        system_index: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
        pair_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Per-atom potentials of a batch of systems packed along the atom axis.

        Systems may differ in cell and atom count; each gets exactly the result of
        :meth:`forward` on its own (mesh calculators group systems of equal mesh
        size and transform their meshes together). The grouping reads the cells
        and system indices on the host, so on an accelerator a call synchronises
        with it; PME/P3M with ``fixed_mesh`` read nothing (one group), and their
        batched step can be captured in a CUDA graph like :meth:`forward`.

        Args:
            charges: ``(N, C)`` charges of all atoms of all systems.
            cells: ``(B, 3, 3)`` one cell per system.
            positions: ``(N, 3)`` positions.
            system_index: ``(N,)`` int64, the system of each atom, in ``[0, B)``.
            neighbor_indices: ``(P, 2)`` pairs, indices into the packed atoms (pairs
                never join two systems).
            neighbor_distances: ``(P,)`` pair distances.
            periodic: ``(B, 3)`` periodic directions per system (slab correction).
            pair_mask: ``(P,)`` bools, ``False`` for padding pairs.

        Returns:
            ``(N, C)`` potentials; system ``b``'s energy is the sum of
            ``charges * result`` over its atoms.
        """
        check_shape("cells", cells, [-1, 3, 3], "(B, 3, 3)")
        n_systems = cells.shape[0]
        _validate_parameters(
            charges,
            cells[0] if n_systems > 0 else torch.eye(3, dtype=positions.dtype),
            positions,
            neighbor_indices,
            neighbor_distances,
            None,
            pair_mask,
            cell_required=self.potential.smearing is not None,
        )
        check_shape(
            "system_index", system_index, [positions.shape[0]], "(N,) like positions"
        )
        if periodic is not None:
            check_shape("periodic", periodic, [n_systems, 3], "(B, 3)")
        rspace = self._compute_rspace(
            charges, neighbor_indices, neighbor_distances, pair_mask
        )
        if self.potential.smearing is None:
            return rspace
        return rspace + self._compute_kspace_batch(
            charges, cells, positions, system_index, periodic
        )

    @torch.jit.unused
    def _compute_kspace_batch(
        self,
        charges: torch.Tensor,
        cells: torch.Tensor,
        positions: torch.Tensor,
        system_index: torch.Tensor,
        periodic: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """k-space part of a packed batch, one system at a time."""
        result = torch.zeros_like(charges)
        for system in range(cells.shape[0]):
            atoms = torch.nonzero(system_index == system).squeeze(1)
            part = self._compute_kspace(
                charges=charges.index_select(0, atoms),
                cell=cells[system],
                positions=positions.index_select(0, atoms),
                periodic=None if periodic is None else periodic[system],
            )
            result = result.index_copy(0, atoms, part)
        return result

    @torch.jit.unused
    def _finish_kspace_batch(
        self,
        potential: torch.Tensor,
        charges: torch.Tensor,
        cells: torch.Tensor,
        positions: torch.Tensor,
        system_index: torch.Tensor,
        periodic: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """:meth:`_finish_kspace` for packed systems; ``potential`` is already
        divided by each system's volume."""
        volumes = torch.abs(torch.linalg.det(cells))
        totals = torch.zeros(
            (cells.shape[0], charges.shape[1]),
            dtype=charges.dtype,
            device=charges.device,
        ).index_add(0, system_index, charges)
        potential = neutralised_corrections(
            potential,
            charges,
            volumes.index_select(0, system_index).unsqueeze(-1),
            self.potential.self_contribution(),
            self.potential.background_correction(),
            totals.index_select(0, system_index),
        )
        if periodic is not None:
            for system in range(cells.shape[0]):
                atoms = torch.nonzero(system_index == system).squeeze(1)
                slab = self.potential.pbc_correction(
                    periodic[system],
                    positions.index_select(0, atoms),
                    cells[system],
                    charges.index_select(0, atoms),
                )
                potential = potential.index_add(0, atoms, slab)
        return potential / 2.0
