"""The batch methods of every calculator: ``forward_batch`` and ``energy_batch``
over systems packed along the atom axis (a mixin of
:class:`~torchpme.calculators.Calculator`)."""

from typing import List, Optional

import torch

from .._core.backward import energies
from .._core.pairs import neutralised_corrections
from .._core.validation import check_shape, message
from .._utils import _validate_parameters

__all__ = ["BatchMethods"]


class BatchMethods:
    """``forward_batch``/``energy_batch`` and their k-space parts, over the
    calculator's ``_compute_rspace``, ``_rspace_energy`` and ``_compute_kspace``."""

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
        mesh_filters: Optional[List[torch.Tensor]] = None,
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
                never join two systems), or a :class:`~torchpme.neighbors.PairList`.
            neighbor_distances: ``(P,)`` pair distances.
            periodic: ``(B, 3)`` periodic directions per system (slabs,
                wires and clusters as :meth:`forward` computes them, so
                crystals, slabs, wires and clusters mix in one call).
            pair_mask: ``(P,)`` bools, ``False`` for padding pairs.
            mesh_filters: PME/P3M only: one filter per system, from
                ``mesh_filter(cells[b])``, reused while the cells and the
                potential are unchanged.

        Returns:
            ``(N, C)`` potentials; system ``b``'s energy is the sum of
            ``charges * result`` over its atoms.
        """
        self._check_batch(
            charges, cells, positions, system_index, neighbor_indices,
            neighbor_distances, periodic, pair_mask, mesh_filters,
        )  # fmt: skip
        rspace = self._compute_rspace(
            charges, neighbor_indices, neighbor_distances, pair_mask
        )
        if self.potential.smearing is None:
            return rspace
        return rspace + self._kspace_by_boundary(
            charges, cells, positions, system_index, periodic, mesh_filters, False
        )

    @torch.jit.unused
    def energy_batch(
        self,
        charges: torch.Tensor,
        cells: torch.Tensor,
        positions: torch.Tensor,
        system_index: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
        pair_mask: Optional[torch.Tensor] = None,
        mesh_filters: Optional[List[torch.Tensor]] = None,
    ) -> torch.Tensor:
        """The energy of each system of a packed batch, ``(B,)``.

        ``E_b = Σ_{i ∈ b} Σ_c q_ic V_ic`` with ``V`` from :meth:`forward_batch`,
        differentiated as :meth:`energy` is: the upstream gradient of each
        system's potentials is ``(∂L/∂E_b) · q`` by construction, so the mesh
        part's backward pass reuses its forward pass and that of the Coulomb
        pair sum is one multiplication per pair, for any weights of the systems'
        energies in a loss. Arguments as :meth:`forward_batch`.

        Example:
            >>> import torch
            >>> from torchpme import Calculator, CoulombPotential
            >>> calculator = Calculator(CoulombPotential())
            >>> charges = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
            >>> cells = torch.eye(3).expand(2, 3, 3)
            >>> system_index = torch.tensor([0, 0, 1, 1])
            >>> pairs = torch.tensor([[0, 1], [2, 3]])
            >>> calculator.energy_batch(charges, cells, torch.zeros(4, 3),
            ...                         system_index, pairs, torch.tensor([2.0, 4.0]))
            tensor([-0.5000, -0.2500])
        """
        self._check_batch(
            charges, cells, positions, system_index, neighbor_indices,
            neighbor_distances, periodic, pair_mask, mesh_filters,
        )  # fmt: skip
        n_systems = cells.shape[0]
        result = self._rspace_energy(
            charges, neighbor_indices, neighbor_distances, pair_mask, system_index,
            n_systems,
        )  # fmt: skip
        if self.potential.smearing is None:
            return result
        return result + self._kspace_by_boundary(
            charges, cells, positions, system_index, periodic, mesh_filters, True
        )

    @torch.jit.unused
    def _kspace_energy_batch(
        self,
        charges: torch.Tensor,
        cells: torch.Tensor,
        positions: torch.Tensor,
        system_index: torch.Tensor,
        periodic: Optional[torch.Tensor],
        mesh_filters: Optional[List[torch.Tensor]] = None,
    ) -> torch.Tensor:
        """``(B,)`` energies of :meth:`_compute_kspace_batch`; mesh methods
        override it."""
        potential = self._compute_kspace_batch(
            charges, cells, positions, system_index, periodic, mesh_filters
        )
        return energies(charges, potential, system_index, cells.shape[0])

    @torch.jit.unused
    def _check_batch(
        self, charges, cells, positions, system_index, neighbor_indices,
        neighbor_distances, periodic, pair_mask, mesh_filters=None,
    ) -> None:  # fmt: skip
        """The argument checks of :meth:`forward_batch` and :meth:`energy_batch`."""
        check_shape("cells", cells, [-1, 3, 3], "(B, 3, 3)")
        n_systems = cells.shape[0]
        counts = _periodic_counts(periodic, n_systems)
        # a cluster's cell is ignored: the cell checks read a periodic system's
        periodic_systems = [s for s in range(n_systems) if self._needs_cell(counts[s])]
        reference = (
            cells[periodic_systems[0]]
            if periodic_systems
            else torch.eye(3, dtype=positions.dtype, device=positions.device)
        )
        _validate_parameters(
            charges,
            reference,
            positions,
            neighbor_indices,
            neighbor_distances,
            None,
            pair_mask,
            cell_required=len(periodic_systems) > 0,
        )
        check_shape(
            "system_index", system_index, [positions.shape[0]], "(N,) like positions"
        )
        for count in sorted(set(counts)):
            self._check_kspace_inputs(
                None, None, mesh_filters[0] if mesh_filters else None, count
            )
        if mesh_filters is not None:
            if len(mesh_filters) != n_systems:
                raise ValueError(
                    message(
                        "mesh_filters",
                        f"one filter per system ({n_systems})",
                        f"{len(mesh_filters)}",
                    )
                )

    @torch.jit.unused
    def _kspace_by_boundary(
        self, charges, cells, positions, system_index, periodic, mesh_filters,
        energy: bool,
    ) -> torch.Tensor:  # fmt: skip
        """The k-space part of a batch, potentials ``(N, C)`` or with ``energy``
        energies ``(B,)``: systems on a mesh of their own (clusters, wires,
        exact slabs) one at a time as :meth:`forward` does them, the others
        together through :meth:`_compute_kspace_batch` or
        :meth:`_kspace_energy_batch`."""
        n_systems = cells.shape[0]
        counts = _periodic_counts(periodic, n_systems)
        alone = [s for s in range(n_systems) if self._on_own_mesh(counts[s])]
        if not alone:
            batch = self._kspace_energy_batch if energy else self._compute_kspace_batch
            return batch(
                charges, cells, positions, system_index, periodic, mesh_filters
            )
        result = charges.new_zeros(n_systems) if energy else torch.zeros_like(charges)
        for system in alone:
            atoms = torch.nonzero(system_index == system).squeeze(1)
            parts = (
                charges.index_select(0, atoms),
                cells[system],
                positions.index_select(0, atoms),
                periodic[system],
            )
            if energy:
                value = self._kspace_energy(*parts).reshape(1)
                result = result.index_add(0, atoms.new_tensor([system]), value)
            else:
                result = result.index_copy(0, atoms, self._compute_kspace(*parts))
        others = [s for s in range(n_systems) if not self._on_own_mesh(counts[s])]
        if not others:
            return result
        members = torch.tensor(others, device=system_index.device)
        atoms = torch.nonzero(torch.isin(system_index, members)).squeeze(1)
        renumbered = torch.full(
            (n_systems,), -1, dtype=system_index.dtype, device=system_index.device
        )
        renumbered[members] = torch.arange(len(others), device=members.device)
        filters = None if mesh_filters is None else [mesh_filters[s] for s in others]
        batch = self._kspace_energy_batch if energy else self._compute_kspace_batch
        part = batch(
            charges.index_select(0, atoms),
            cells.index_select(0, members),
            positions.index_select(0, atoms),
            renumbered.index_select(0, system_index.index_select(0, atoms)),
            periodic.index_select(0, members),
            filters,
        )
        if energy:
            return result.index_add(0, members, part)
        return result.index_copy(0, atoms, part)

    def _on_own_mesh(self, n_periodic: int) -> bool:
        """Whether a system with ``n_periodic`` periodic directions is computed
        on a mesh of its own, which follows its atoms (a cluster's)."""
        return n_periodic == 0

    @torch.jit.unused
    def _compute_kspace_batch(
        self,
        charges: torch.Tensor,
        cells: torch.Tensor,
        positions: torch.Tensor,
        system_index: torch.Tensor,
        periodic: Optional[torch.Tensor],
        mesh_filters: Optional[List[torch.Tensor]] = None,
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
                mesh_filter=None if mesh_filters is None else mesh_filters[system],
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


def _periodic_counts(periodic: Optional[torch.Tensor], n_systems: int) -> List[int]:
    """Periodic directions per system (3 without ``periodic``), after a check of
    its shape and dtype; read on the host."""
    if periodic is None:
        return [3] * n_systems
    check_shape("periodic", periodic, [n_systems, 3], "(B, 3)")
    if periodic.is_floating_point() or periodic.is_complex():
        raise TypeError(message("periodic", "bools", f"{periodic.dtype}"))
    return torch.count_nonzero(periodic, dim=1).tolist()
