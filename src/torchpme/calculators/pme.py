"""``PMECalculator``: the long-range part on a mesh, with Lagrange interpolation."""

from typing import List, Optional, Tuple

import torch

from .._core import kspace
from .._core import mesh as core_mesh
from .._core.mesh import convolve
from .._core.mesh_energy import convolve_energy
from .._core.validation import (
    as_index,
    check_fixed_mesh,
    check_free_of_nan,
    check_positive,
)
from .._core.weights import Scheme, interpolation_scheme, moved
from ..lib.kspace_filter import KSpaceFilter
from ..lib.mesh_interpolator import MeshInterpolator
from ..potentials import Potential
from . import _mesh_batch as mesh_batch
from ._mesh_checks import (
    check_mesh_inputs,
    check_slab_method,
    open_exponent,
)
from ._open_meshes import OpenMeshes
from .calculator import Calculator
from .ewald import check_range_separated

__all__ = ["PMECalculator"]

NAN_FILTER_HINT = (
    "; the mesh is too coarse or too skewed for this cell: try a smaller mesh_spacing"
)


class PMECalculator(OpenMeshes, Calculator):
    """Particle-mesh Ewald: charges spread on a mesh, convolved by FFT, gathered back.

    The charge density is spread onto a mesh of ``n_d = 2^⌈log₂(2‖a_d‖/h + 1)⌉``
    points per lattice vector with ``interpolation_nodes`` Lagrange nodes per axis,
    filtered with ``G(|k|²) = potential.lr_from_k_sq`` (unnormalised FFT pair),
    interpolated back to the atoms and divided by the volume; self, background and
    slab corrections are those of :class:`EwaldCalculator`. Cost O(N + M log M).

    A cluster (``periodic`` all ``False``) is computed without periodic images
    on a mesh around the atoms, doubled so that the FFT convolution is the
    free-space one (:mod:`torchpme._core.freespace`, Hockney & Eastwood): any
    net charge, no vacuum to add, the cell ignored; nodes are
    ``mesh_spacing / 2`` apart. With ``fixed_mesh`` the cell is instead the
    cluster's box (the atoms inside it, its corner at the origin) with
    ``fixed_mesh`` nodes per lattice vector: the shapes are fixed for
    ``torch.compile`` and CUDA graphs, and the filter can be kept
    (:meth:`mesh_filter` with ``periodic``). The same holds for wires and
    exact slabs on a fixed mesh: the cell is their box, the atoms inside it
    along the open lattice vectors.

    Args:
        potential: range-separated potential (with a smearing).
        mesh_spacing: target mesh spacing ``h`` (> 0).
        interpolation_nodes: nodes per axis, 3–7.
        full_neighbor_list: whether the neighbour list is full.
        fixed_mesh: mesh points per lattice vector, used instead of the size derived
            from ``mesh_spacing``. With a fixed mesh ``forward`` reads no tensor
            data on the host, as ``torch.compile(fullgraph=True)`` and CUDA graphs
            need (for Ewald, pass ``kvectors`` to ``forward`` instead).
        slab_method: for ``periodic`` with two ``True``: ``"yeh-berkowitz"`` (the
            3-D sum over the given cell, vacuum included, with the dipole
            correction of Yeh & Berkowitz) or ``"exact"`` (the 2-D periodic sum
            on a mesh padded along the plane's normal,
            :mod:`torchpme._core.slab`: no vacuum needed, any third lattice
            vector, any net charge; ``1/r`` and ``1/r^p`` for ``p > 2``).

    The attributes ``kspace_filter`` and ``mesh_interpolator`` are kept for
    compatibility; :meth:`forward` does not change them and keeps no state.

    The filter depends on the cell and the potential only. In MD at constant cell
    compute it once with :meth:`mesh_filter` and pass it as ``mesh_filter=`` to
    :meth:`forward` or :meth:`energy` (on a fine mesh its evaluation is a
    noticeable part of a step); compute it again when the cell or the potential
    changes.

    Reference: Darden, York & Pedersen, J. Chem. Phys. 98, 10089 (1993),
    doi:10.1063/1.464397.

    Example:
        >>> import torch
        >>> from torchpme import CoulombPotential, PMECalculator
        >>> from torchpme.neighbors import compute_neighbors
        >>> # CsCl: Cs+ at the corner, Cl- at the centre of a unit cube
        >>> cell = torch.eye(3, dtype=torch.float64)
        >>> positions = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]],
        ...                          dtype=torch.float64)
        >>> charges = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
        >>> indices, distances = compute_neighbors(positions, cell, cutoff=1.0)
        >>> potential = CoulombPotential(smearing=0.2)
        >>> calculator = PMECalculator(
        ...     potential, mesh_spacing=0.05, interpolation_nodes=5
        ... )
        >>> potentials = calculator(charges, cell, positions, indices, distances)
        >>> # the Madelung energy -1.762675 · 2/√3 of one ion pair
        >>> round(float((charges * potentials).sum()), 5)
        -2.03536
    """

    #: the interpolation scheme's method (B-splines in :class:`P3MCalculator`)
    interpolation_method = "Lagrange"
    # the scheme's type, for TorchScript (otherwise inferred as a plain tuple)
    scheme: Scheme

    def __init__(
        self,
        potential: Potential,
        mesh_spacing: float,
        interpolation_nodes: int = 4,
        full_neighbor_list: bool = False,
        *,
        fixed_mesh: Optional[List[int]] = None,
        slab_method: str = "yeh-berkowitz",
    ):
        super().__init__(potential=potential, full_neighbor_list=full_neighbor_list)
        check_range_separated(potential)
        check_positive("mesh_spacing", mesh_spacing)
        self.slab_method: str = check_slab_method(slab_method, potential)
        # the kernels of wires and exact slabs are written for 1/r^p (0: other)
        self.open_exponent: float = open_exponent(potential)
        self.mesh_spacing: float = mesh_spacing
        interpolation_nodes = as_index(interpolation_nodes)
        self.interpolation_nodes: int = interpolation_nodes
        # [0, 0, 0] means "derive from mesh_spacing" (TorchScript needs a typed list)
        self.fixed_mesh: List[int] = (
            [0, 0, 0] if fixed_mesh is None else check_fixed_mesh(fixed_mesh)
        )
        # placeholders in the dtype/device of the potential's buffers
        reference = potential.prefactor
        cell = torch.eye(3, dtype=reference.dtype, device=reference.device)
        ns_mesh = torch.ones(3, dtype=torch.int64, device=reference.device)
        self.mesh_interpolator = MeshInterpolator(
            cell, ns_mesh, interpolation_nodes, method=self.interpolation_method
        )
        # built once: the plan of every call uses it
        self.scheme = interpolation_scheme(
            self.interpolation_method, interpolation_nodes
        )
        self.kspace_filter = self._make_filter(cell, ns_mesh)

    def _apply(self, fn, recurse: bool = True):
        # the scheme's table is not a buffer (a NamedTuple), so it follows
        # .to(device) here
        super()._apply(fn, recurse)
        self.scheme = moved(self.scheme, fn)
        return self

    def _make_filter(self, cell: torch.Tensor, ns_mesh: torch.Tensor) -> KSpaceFilter:
        return KSpaceFilter(
            cell, ns_mesh, self.potential, fft_norm="backward", ifft_norm="forward"
        )

    def _mesh_size(self, cell: torch.Tensor) -> List[int]:
        """The fixed mesh if one was given, else the size for ``mesh_spacing``
        (which reads the cell: a host synchronisation on accelerators)."""
        if self.fixed_mesh[0] > 0:
            return self.fixed_mesh
        lengths: List[float] = torch.linalg.norm(cell.detach(), dim=1).tolist()
        return kspace.mesh_size(lengths, self.mesh_spacing)

    def _filter(self, cell: torch.Tensor, ns: List[int]) -> torch.Tensor:
        k_sq = kspace.mesh_k_squared(cell, ns)
        kernel = self.kspace_filter.filter_values(k_sq, cell, ns)
        check_free_of_nan(
            "the k-space filter",
            kernel,
            "; check the potential's lr_from_k_sq, or try another mesh_spacing",
        )
        return kernel

    @torch.jit.export
    def mesh_filter(
        self, cell: torch.Tensor, periodic: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """The reciprocal-space filter of ``cell`` on its mesh, to pass to
        :meth:`forward` or :meth:`energy` as ``mesh_filter`` while the cell and
        the potential are unchanged.

        ``G(k)`` of the potential (``lr_from_k_sq``) on the half spectrum
        ``(n0, n1, n2//2+1)``, times the optimal influence function for P3M.
        The filter depends on the cell: for a stress (a gradient with respect to
        the cell) let the calculator make it in the same step, or make it there
        from the cell that requires the gradient.

        With a fixed mesh and ``periodic`` of a cluster, a wire or an exact
        slab, the filter of that system in the box ``cell`` on its doubled
        mesh.

        Args:
            cell: ``(3, 3)`` cell, rows are lattice vectors.
            periodic: ``(3,)`` bools, as given to :meth:`forward`.

        Returns:
            ``(n0, n1, n2//2+1)`` real tensor in the dtype of ``cell``.
        """
        boxed = self._boxed_open_filter(cell, periodic)
        if boxed is not None:
            return boxed
        return self._filter(cell, self._mesh_size(cell))

    def _check_kspace_inputs(
        self,
        node_mask: Optional[torch.Tensor],
        kvectors: Optional[torch.Tensor],
        mesh_filter: Optional[torch.Tensor],
        n_periodic: int = 3,
    ) -> None:
        check_mesh_inputs(
            node_mask,
            kvectors,
            mesh_filter,
            n_periodic,
            self.fixed_mesh[0] > 0,
            self.slab_method == "exact",
            self.open_exponent,
        )

    def _mesh_setup(
        self,
        cell: torch.Tensor,
        positions: torch.Tensor,
        mesh_filter: Optional[torch.Tensor],
    ) -> Tuple[core_mesh.MeshPlan, torch.Tensor, torch.Tensor]:
        """``(plan, kernel, volume)``: the interpolation plan (which holds the mesh
        size), the filter (``mesh_filter`` if given) and the cell volume."""
        ns = self._mesh_size(cell)
        inverse_cell = torch.linalg.inv_ex(cell)[0]
        plan = core_mesh.interpolation_plan(positions, inverse_cell, ns, self.scheme)
        if mesh_filter is None:
            kernel = self._filter(cell, ns)
        else:
            mesh_batch.check_mesh_filter(mesh_filter, ns, positions)
            kernel = mesh_filter
        return plan, kernel, torch.abs(torch.linalg.det(cell))

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
        own_mesh = self._open_setup(cell, positions, periodic, mesh_filter)
        if own_mesh is not None:
            plan, kernel = own_mesh
            potential = convolve(plan, charges, kernel)
            # no background (a cluster has no images; the k = 0 terms of slabs
            # and wires hold any net charge): only the self interaction goes
            return 0.5 * (potential - charges * self.potential.self_contribution())
        plan, kernel, volume = self._mesh_setup(cell, positions, mesh_filter)
        potential = convolve(plan, charges, kernel) / volume
        return self._finish_kspace(
            potential, charges, cell, positions, periodic, node_mask
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
        """The mesh energy from :func:`convolve_energy` (a backward pass without
        transforms on every device), plus the corrections, which are linear in
        the mesh potential: ``finish(φ) = φ/2 + finish(0)``."""
        own_mesh = self._open_setup(cell, positions, periodic, mesh_filter)
        if own_mesh is not None:
            plan, kernel = own_mesh
            self_energy = torch.sum(
                charges.square()
            ) * self.potential.self_contribution().to(charges.dtype)
            return 0.5 * (convolve_energy(plan, charges, kernel) - self_energy)
        plan, kernel, volume = self._mesh_setup(cell, positions, mesh_filter)
        mesh = convolve_energy(plan, charges, kernel)
        corrections = self._finish_kspace(
            torch.zeros_like(charges), charges, cell, positions, periodic, None
        )
        return mesh / (2.0 * volume) + torch.sum(charges * corrections)

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
        """Systems with equal mesh sizes share stacked spreads, FFTs and gathers
        (see :mod:`torchpme.calculators._mesh_batch`)."""
        potential = torch.zeros_like(charges)
        for values, atoms, _ in mesh_batch.convolve_groups(
            self, charges, cells, positions, system_index, False, mesh_filters
        ):
            potential = potential.index_copy(0, atoms, values)
        return self._finish_kspace_batch(
            potential, charges, cells, positions, system_index, periodic
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
        """The ``(B,)`` mesh energies (a backward pass without transforms, per
        system), plus the corrections, linear in the mesh potential."""
        energies = charges.new_zeros(cells.shape[0])
        for values, _, members in mesh_batch.convolve_groups(
            self, charges, cells, positions, system_index, True, mesh_filters
        ):
            energies = energies.index_add(0, members, 0.5 * values)
        corrections = self._finish_kspace_batch(
            torch.zeros_like(charges), charges, cells, positions, system_index,
            periodic,
        )  # fmt: skip
        return energies.index_add(
            0, system_index, torch.sum(charges * corrections, dim=1)
        )
