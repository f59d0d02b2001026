"""``Calculator``: real-space pair sums, and the frame every k-space method fills in."""

from typing import Optional

import torch

from .._core.backward import energies
from .._core.pairlist import indices_of
from .._core.pairs import neutralised_corrections, pair_sum
from .._core.shortrange import coulomb_pair_energy, coulomb_pair_sum
from .._core.validation import count_periodic, message
from .._utils import _validate_parameters
from ..potentials import CoulombPotential, Potential
from ._batch import BatchMethods

__all__ = ["Calculator"]


class Calculator(BatchMethods, torch.nn.Module):
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
        full_neighbor_list: Optional[bool] = None,
    ) -> torch.Tensor:
        """Half the pair sum of the short-range (or bare) potential, ``(N, C)``
        (``neighbor_indices`` may be a :class:`~torchpme.neighbors.PairList` in
        eager mode); ``full_neighbor_list`` overrides the calculator's list
        convention (the distributed calculators pass full lists)."""
        full = self.full_neighbor_list
        if full_neighbor_list is not None:
            full = full_neighbor_list
        if not torch.jit.is_scripting():
            if self._fused_applies(pair_mask):
                return self._fused_rspace(
                    charges, neighbor_indices, neighbor_distances, full
                )
            neighbor_indices = indices_of(neighbor_indices)
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
            return pair_sum(charges, neighbor_indices, values, full)

    @torch.jit.unused
    def _fused_applies(self, pair_mask: Optional[torch.Tensor]) -> bool:
        """Whether the fused Coulomb pair sum applies: a plain range-separated
        Coulomb potential whose parameters need no gradient, and no pair mask."""
        potential = self.potential
        smearing = potential.smearing
        return not (
            type(potential) is not CoulombPotential
            or smearing is None
            or smearing.requires_grad
            or potential.prefactor.requires_grad
            or potential.exclusion_radius is not None
            or pair_mask is not None
        )

    @torch.jit.unused
    def _fused_rspace(
        self,
        charges: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        full_neighbor_list: bool,
    ) -> torch.Tensor:
        """The fused Coulomb pair sum."""
        return coulomb_pair_sum(
            charges,
            neighbor_indices,
            neighbor_distances,
            self.potential.smearing,
            self.potential.prefactor,
            full_neighbor_list,
        )

    @torch.jit.unused
    def _rspace_energy(
        self,
        charges: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        pair_mask: Optional[torch.Tensor],
        system_index: Optional[torch.Tensor] = None,
        n_systems: int = 0,
        full_neighbor_list: Optional[bool] = None,
    ) -> torch.Tensor:
        """``Σ q · _compute_rspace(...)`` (per system with ``system_index``),
        through the fused energy where it applies (its backward knows the
        upstream gradient by construction)."""
        full = self.full_neighbor_list
        if full_neighbor_list is not None:
            full = full_neighbor_list
        if self._fused_applies(pair_mask):
            return coulomb_pair_energy(
                charges,
                neighbor_indices,
                neighbor_distances,
                self.potential.smearing,
                self.potential.prefactor,
                full,
                system_index,
                n_systems,
            )
        rspace = self._compute_rspace(
            charges, neighbor_indices, neighbor_distances, pair_mask, full
        )
        return energies(charges, rspace, system_index, n_systems)

    def _compute_kspace(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
        kvectors: Optional[torch.Tensor] = None,
        node_mask: Optional[torch.Tensor] = None,
        mesh_filter: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        raise NotImplementedError(
            "the base Calculator has no reciprocal-space part: use EwaldCalculator, "
            "PMECalculator or P3MCalculator for a range-separated potential"
        )

    def _needs_cell(self, n_periodic: int) -> bool:
        """Whether the whole ``(3, 3)`` cell is used (and must be non-singular)
        for a system with ``n_periodic`` periodic directions: not by the direct
        sum, nor for systems on a mesh of their own, which use their periodic
        rows only."""
        return self.potential.smearing is not None and not self._on_own_mesh(n_periodic)

    def _check_kspace_inputs(
        self,
        node_mask: Optional[torch.Tensor],
        kvectors: Optional[torch.Tensor],
        mesh_filter: Optional[torch.Tensor],
        n_periodic: int = 3,
    ) -> None:
        """Reject, before any work, inputs this method cannot use
        (``n_periodic``: the number of periodic directions)."""
        if self.potential.smearing is not None and n_periodic < 2:
            raise ValueError(
                message(
                    "periodic",
                    "two or three periodic directions (EwaldCalculator sums "
                    "periodic images; PMECalculator and P3MCalculator also take "
                    "clusters, all False; a Calculator without smearing sums "
                    "pairs directly)",
                    f"{n_periodic}",
                )
            )
        if mesh_filter is not None:
            raise ValueError(
                message(
                    "mesh_filter",
                    "None (only PMECalculator and P3MCalculator take a filter)",
                    "a tensor",
                )
            )

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
        mesh_filter: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Per-atom potentials ``(N, C)``.

        Args:
            charges: ``(N, C)`` charges (or any per-atom weights), C channels.
            cell: ``(3, 3)`` cell, rows are lattice vectors.
            positions: ``(N, 3)`` Cartesian positions.
            neighbor_indices: ``(P, 2)`` neighbour pairs ``(i, j)``, or (eager
                mode) a :class:`~torchpme.neighbors.PairList`, whose kept index
                columns then serve every call.
            neighbor_distances: ``(P,)`` pair distances (of the periodic images).
            periodic: ``(3,)`` bools; with exactly two ``True`` a slab: the
                Yeh–Berkowitz correction for Coulomb potentials, or with PME/P3M
                and ``slab_method="exact"`` the 2-D periodic sum; one ``True``
                (PME and P3M, ``1/r^p``): a wire, the 1-D periodic sum; all
                ``False`` (PME and P3M): a cluster, summed without images. The
                cell rows of open directions are then ignored (zeros allowed).
            node_mask: ``(N,)`` bools, ``False`` for padding atoms (Ewald only).
            pair_mask: ``(P,)`` bools, ``False`` for padding pairs.
            kvectors: ``(K, 3)`` precomputed k-vectors (Ewald only).
            mesh_filter: the filter of ``cell`` from ``mesh_filter(cell)`` (PME
                and P3M only), reused while the cell and potential are unchanged.

        Returns:
            ``(N, C)`` potentials; the energy is ``(charges * result).sum()``.
        """
        n_periodic = count_periodic(periodic)
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
            cell_required=self._needs_cell(n_periodic),
        )
        self._check_kspace_inputs(node_mask, kvectors, mesh_filter, n_periodic)
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
            mesh_filter=mesh_filter,
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
        mesh_filter: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The energy ``E = Σ_ic q_ic V_ic``, a 0-dim tensor.

        The same number as ``(charges * self(...)).sum()``, differentiated
        faster: its upstream gradient is known by construction, so the backward
        pass of the mesh part reuses the forward pass (no transform) and that of
        the Coulomb pair sum is one multiplication per pair. Use it whenever the
        energy (forces, stress, ``∂E/∂q = 2 V``) is what is differentiated.
        Arguments as :meth:`forward` (not available in TorchScript).

        Example:
            >>> from torchpme import CoulombPotential
            >>> calculator = Calculator(CoulombPotential())
            >>> charges = torch.tensor([[1.0], [-1.0]])
            >>> pairs = torch.tensor([[0, 1]])
            >>> calculator.energy(charges, torch.eye(3), torch.zeros(2, 3), pairs,
            ...                   torch.tensor([2.0]))
            tensor(-0.5000)
        """
        n_periodic = count_periodic(periodic)
        _validate_parameters(
            charges,
            cell,
            positions,
            neighbor_indices,
            neighbor_distances,
            periodic,
            pair_mask,
            cell_required=self._needs_cell(n_periodic),
        )
        self._check_kspace_inputs(None, None, mesh_filter, n_periodic)
        energy = self._rspace_energy(
            charges, neighbor_indices, neighbor_distances, pair_mask
        )
        if self.potential.smearing is None:
            return energy
        return energy + self._kspace_energy(
            charges, cell, positions, periodic, mesh_filter
        )

    @torch.jit.unused
    def _kspace_energy(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        periodic: Optional[torch.Tensor],
        mesh_filter: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``Σ q · _compute_kspace(...)``; mesh methods override it."""
        potential = self._compute_kspace(
            charges=charges, cell=cell, positions=positions, periodic=periodic
        )
        return torch.sum(charges * potential)
