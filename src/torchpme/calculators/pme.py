"""``PMECalculator``: the long-range part on a mesh, with Lagrange interpolation."""

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch

from .._core import chunks, defaults, kspace
from .._core import mesh as core_mesh
from .._core.convolution import convolve, convolve_energy, convolve_stacks
from .._core.validation import check_fixed_mesh, check_positive, compiling
from ..lib.kspace_filter import KSpaceFilter
from ..lib.mesh_interpolator import MeshInterpolator
from ..potentials import CoulombPotential, InversePowerLawPotential, Potential
from .calculator import Calculator
from .ewald import check_range_separated

__all__ = ["PMECalculator"]


def _filter_key(calculator, cell: torch.Tensor, ns: List[int]):
    """What the filter depends on, as plain values, or ``None`` when not cacheable."""
    potential = calculator.potential
    if type(potential) not in (CoulombPotential, InversePowerLawPotential):
        return None
    if cell.device.type != "cpu" or cell.requires_grad:
        return None
    if compiling():
        return None
    tensors = list(potential.state_dict(keep_vars=True).items())
    if any(t.requires_grad for _, t in tensors):
        return None
    return (
        tuple(ns),
        str(cell.dtype),
        tuple(cell.reshape(-1).tolist()),
        tuple((name, t.tolist()) for name, t in tensors),
        _scalars(potential),
        type(calculator.kspace_filter),
        _scalars(calculator.kspace_filter),
    )


def _scalars(module: torch.nn.Module) -> tuple:
    plain = (bool, int, float, str, type(None))
    return tuple(
        (name, value if isinstance(value, plain) else tuple(value))
        for name, value in sorted(vars(module).items())
        if isinstance(value, plain)
        or (
            isinstance(value, (list, tuple))
            and all(isinstance(v, plain) for v in value)
        )
    )


class PMECalculator(Calculator):
    """Particle-mesh Ewald: charges spread on a mesh, convolved by FFT, gathered back.

    The charge density is spread onto a mesh of ``n_d = 2^⌈log₂(2‖a_d‖/h + 1)⌉``
    points per lattice vector with ``interpolation_nodes`` Lagrange nodes per axis,
    filtered with ``G(|k|²) = potential.lr_from_k_sq`` (unnormalised FFT pair),
    interpolated back to the atoms and divided by the volume; self, background and
    slab corrections are those of :class:`EwaldCalculator`. Cost O(N + M log M).

    Args:
        potential: range-separated potential (with a smearing).
        mesh_spacing: target mesh spacing ``h`` (> 0).
        interpolation_nodes: nodes per axis, 3–7.
        full_neighbor_list: whether the neighbour list is full.
        fixed_mesh: mesh points per lattice vector, used instead of the size derived
            from ``mesh_spacing``. With a fixed mesh ``forward`` reads no tensor
            data on the host, as ``torch.compile(fullgraph=True)`` and CUDA graphs
            need (for Ewald, pass ``kvectors`` to ``forward`` instead).

    The attributes ``kspace_filter`` and ``mesh_interpolator`` are kept for
    compatibility; :meth:`forward` does not change them. Its only state is a cache
    of recent filters (up to 64 MB, and always the last one), reused while the
    cell, mesh and potential are unchanged (CPU, eager mode, Coulomb and
    inverse-power-law potentials without gradients through the filter).

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

    _method = "Lagrange"

    def __init__(
        self,
        potential: Potential,
        mesh_spacing: float,
        interpolation_nodes: int = 4,
        full_neighbor_list: bool = False,
        *,
        fixed_mesh: Optional[List[int]] = None,
    ):
        super().__init__(potential=potential, full_neighbor_list=full_neighbor_list)
        check_range_separated(potential)
        check_positive("mesh_spacing", mesh_spacing)
        self.mesh_spacing: float = mesh_spacing
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
            cell, ns_mesh, interpolation_nodes, method=self._method
        )
        self.kspace_filter = self._make_filter(cell, ns_mesh)

    def _make_filter(self, cell: torch.Tensor, ns_mesh: torch.Tensor) -> KSpaceFilter:
        return KSpaceFilter(
            cell, ns_mesh, self.potential, fft_norm="backward", ifft_norm="forward"
        )

    def _check_kspace_inputs(
        self, node_mask: Optional[torch.Tensor], kvectors: Optional[torch.Tensor]
    ) -> None:
        if node_mask is not None or kvectors is not None:
            raise NotImplementedError(
                "mesh calculators do not take `node_mask` or `kvectors` (padded "
                "batches): use forward_batch, or call them once per system"
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
        return self.kspace_filter.filter_values(k_sq, cell, ns)

    @torch.jit.unused
    def _cached_filter(self, cell: torch.Tensor, ns: List[int]) -> torch.Tensor:
        """The filter of ``cell`` (or of a ``(B, 3, 3)`` stack of cells), reused
        while cells, mesh and potential are unchanged.

        In MD at constant volume the filter (a grid-sized kernel evaluation, a
        large part of a PME step on a fine mesh) is the same on every call. It is cached only where
        its inputs can be compared exactly and cheaply: on CPU, in eager mode, for
        the built-in Coulomb and inverse-power-law potentials (whose whole state is
        a few scalars), and when nothing it depends on requires a gradient.
        """
        key = _filter_key(self, cell, ns)
        if key is None:
            return self._filter(cell, ns)
        # a batch has one filter per stack of meshes
        cache = self.__dict__.setdefault("_filter_cache", OrderedDict())
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        kernel = self._filter(cell, ns)
        cache[key] = kernel
        total = sum(entry.nbytes for entry in cache.values())
        while len(cache) > 1 and total > defaults.FILTER_CACHE_BYTES:
            total -= cache.popitem(last=False)[1].nbytes
        return kernel

    def _mesh_setup(
        self, cell: torch.Tensor, positions: torch.Tensor
    ) -> Tuple[core_mesh.MeshPlan, torch.Tensor, torch.Tensor]:
        """``(plan, kernel, volume)``: the interpolation plan (which holds the mesh
        size), the filter and the cell volume."""
        ns = self._mesh_size(cell)
        inverse_cell = torch.linalg.inv_ex(cell)[0]
        plan = core_mesh.interpolation_plan(
            positions, inverse_cell, ns, self.mesh_interpolator._coefficients
        )
        if torch.jit.is_scripting():
            kernel = self._filter(cell, ns)
        else:
            kernel = self._cached_filter(cell, ns)
        return plan, kernel, torch.abs(torch.linalg.det(cell))

    def _compute_kspace(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
        kvectors: Optional[torch.Tensor] = None,
        node_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        plan, kernel, volume = self._mesh_setup(cell, positions)
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
    ) -> torch.Tensor:
        """The mesh energy from :func:`convolve_energy` (a backward pass without
        transforms on every device), plus the corrections, which are linear in
        the mesh potential: ``finish(φ) = φ/2 + finish(0)``."""
        plan, kernel, volume = self._mesh_setup(cell, positions)
        mesh = convolve_energy(plan, charges, kernel)
        corrections = self._finish_kspace(
            torch.zeros_like(charges), charges, cell, positions, periodic, None
        )
        return mesh / (2.0 * volume) + torch.sum(charges * corrections)

    @torch.jit.unused
    def _convolve_group(
        self,
        charges: torch.Tensor,
        cells: torch.Tensor,
        positions: torch.Tensor,
        system_index: torch.Tensor,
        inverse_cells: torch.Tensor,
        volumes: torch.Tensor,
        systems: List[int],
        ns: List[int],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(values, atoms)``: the mesh potentials of the atoms of ``systems`` (all
        on ``ns`` meshes), from one interpolation plan, transformed in stacks of a
        few meshes on CPU (see :data:`torchpme._core.defaults.MESH_STACK`)."""
        if len(systems) == cells.shape[0]:
            # the whole batch: nothing is selected (no index made on the host)
            atoms = torch.arange(positions.shape[0], device=positions.device)
            owners = local = system_index
            group_cells, group_volumes = cells, volumes
            group_positions, group_charges = positions, charges
        else:
            members = torch.tensor(systems, device=positions.device)
            atoms = torch.nonzero(torch.isin(system_index, members)).squeeze(1)
            lookup = torch.zeros(
                cells.shape[0], dtype=torch.int64, device=positions.device
            )
            lookup[members] = torch.arange(len(systems), device=positions.device)
            owners = system_index.index_select(0, atoms)
            local = lookup.index_select(0, owners)
            group_cells = cells.index_select(0, members)
            group_volumes = volumes.index_select(0, members)
            group_positions = positions.index_select(0, atoms)
            group_charges = charges.index_select(0, atoms)
        plan = core_mesh.interpolation_plan(
            group_positions,
            inverse_cells.index_select(0, owners),
            ns,
            self.mesh_interpolator._coefficients,
            local,
            len(systems),
        )
        kernel = self._cached_filter(group_cells, ns)
        # 1/V in the kernel, not on the atoms: the energy's gradient then
        # reaches the convolution as the charges themselves (its fast backward)
        kernel = kernel / group_volumes.reshape(-1, 1, 1, 1)
        # on CPU a few meshes at a time: their buffers are then reused rather
        # than faulted in afresh (see _core.defaults)
        step = chunks.chunk_length(
            defaults.MESH_STACK // (ns[0] * ns[1] * ns[2]),
            len(systems),
            positions.device,
        )
        if step >= len(systems):  # one stack: no counts read on the host
            return convolve(plan, group_charges, kernel), atoms
        per_mesh = torch.bincount(local, minlength=len(systems)).tolist()
        meshes = [
            min(step, len(systems) - start) for start in range(0, len(systems), step)
        ]
        counts = [
            sum(per_mesh[start : start + step])
            for start in range(0, len(systems), step)
        ]
        values = convolve_stacks(plan, group_charges, kernel, meshes, counts)
        return values, atoms

    @torch.jit.unused
    def _compute_kspace_batch(
        self,
        charges: torch.Tensor,
        cells: torch.Tensor,
        positions: torch.Tensor,
        system_index: torch.Tensor,
        periodic: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Systems with equal mesh sizes share stacked spreads, FFTs and gathers (on
        CPU a few meshes per stack, see :data:`torchpme._core.defaults.MESH_STACK`).
        With a fixed mesh all systems form one group, found without reading the
        cells on the host."""
        groups: Dict[Tuple[int, int, int], List[int]] = {}
        if self.fixed_mesh[0] > 0:
            groups[tuple(self.fixed_mesh)] = list(range(cells.shape[0]))
        else:
            for system, lengths in enumerate(
                torch.linalg.norm(cells.detach(), dim=-1).tolist()
            ):
                ns = kspace.mesh_size(lengths, self.mesh_spacing)
                groups.setdefault((ns[0], ns[1], ns[2]), []).append(system)
        inverse_cells = torch.linalg.inv_ex(cells)[0]
        volumes = torch.abs(torch.linalg.det(cells))
        potential = torch.zeros_like(charges)
        for shape, members in groups.items():
            values, atoms = self._convolve_group(
                charges,
                cells,
                positions,
                system_index,
                inverse_cells,
                volumes,
                members,
                list(shape),
            )
            potential = potential.index_copy(0, atoms, values)
        return self._finish_kspace_batch(
            potential, charges, cells, positions, system_index, periodic
        )
