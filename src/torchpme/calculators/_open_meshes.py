"""The meshes of open systems for :class:`~torchpme.PMECalculator` and
:class:`~torchpme.P3MCalculator`: clusters, wires and exact slabs, whose meshes
are built around their atoms (or, for a cluster on a fixed mesh, its box)."""

from typing import List, Optional, Tuple

import torch

from .._core import freespace, kspace, open_mesh, slab, wire
from .._core import mesh as core_mesh
from .._core.execution import compiling
from . import _mesh_batch as mesh_batch
from ._mesh_checks import check_inside

__all__ = ["OpenMeshes"]


class OpenMeshes:
    """The setup ``(plan, kernel)`` of the systems on a mesh of their own; mixed
    into the mesh calculators, whose attributes (``fixed_mesh``,
    ``mesh_spacing``, ``interpolation_nodes``, ``scheme``, ``potential``,
    ``kspace_filter``, ``slab_method``, ``open_exponent``) it reads."""

    def _cluster_setup(
        self,
        cell: torch.Tensor,
        positions: torch.Tensor,
        mesh_filter: Optional[torch.Tensor],
    ) -> Tuple[core_mesh.MeshPlan, torch.Tensor]:
        """``(plan, kernel)`` of a cluster: the extended mesh around the atoms and
        its free-space filter (:mod:`torchpme._core.freespace`), with nodes
        ``mesh_spacing / 2`` apart (the coarsest spacing of a periodic mesh);
        with a fixed mesh, that of the box ``cell``."""
        if self.fixed_mesh[0] > 0:
            return self._boxed_cluster_setup(cell, positions, mesh_filter)
        spacing = 0.5 * self.mesh_spacing
        mesh = freespace.cluster_mesh(
            positions, spacing, self.interpolation_nodes // 2 + 1, self._taper()
        )
        lengths = torch.tensor(mesh.ns, dtype=positions.dtype, device=positions.device)
        box = lengths * spacing
        plan = core_mesh.interpolation_plan(
            positions - mesh.origin, torch.diag(1.0 / box), mesh.ns, self.scheme
        )
        distances = freespace.octant_distances(mesh.ns, spacing, positions)
        sampled = self.potential.lr_from_dist(distances.reshape(-1))
        kernel = freespace.cluster_filter(
            mesh,
            distances,
            sampled.reshape(distances.shape),
            self.potential.self_contribution(),
            self.kspace_filter.influence(torch.diag(box), mesh.ns),
        )
        return plan, kernel

    def _boxed_sizes(self) -> List[int]:
        """The extended mesh of a cluster in a fixed box: the stencils' reach
        doubled, and for P3M a taper over half the box past it."""
        taper = [0, 0, 0]
        if self._taper() > 0.0:
            taper = [n // 2 for n in self.fixed_mesh]
        reach = self.interpolation_nodes // 2 + 1
        return freespace.boxed_sizes(self.fixed_mesh, reach, taper)

    def _boxed_cluster_setup(
        self,
        cell: torch.Tensor,
        positions: torch.Tensor,
        mesh_filter: Optional[torch.Tensor],
    ) -> Tuple[core_mesh.MeshPlan, torch.Tensor]:
        """``(plan, kernel)`` of a cluster in the box ``cell`` (atoms inside it,
        its corner at the origin) with ``fixed_mesh`` nodes per lattice vector:
        shapes fixed before the call, nothing read on the host (compile, CUDA
        graphs), and the filter may be kept (:meth:`mesh_filter`)."""
        if not torch.jit.is_scripting():
            if not compiling():
                check_inside(cell, positions, [0, 1, 2])
        sizes = self._boxed_sizes()
        ratios = [float(m) / float(n) for m, n in zip(sizes, self.fixed_mesh)]
        rows = [cell[0] * ratios[0], cell[1] * ratios[1], cell[2] * ratios[2]]
        extended = torch.stack(rows)
        inverse = torch.linalg.inv_ex(extended)[0]
        plan = core_mesh.interpolation_plan(positions, inverse, sizes, self.scheme)
        if mesh_filter is not None:
            mesh_batch.check_mesh_filter(mesh_filter, sizes, positions)
            return plan, mesh_filter
        return plan, self._boxed_filter(cell)

    def _boxed_filter(self, cell: torch.Tensor) -> torch.Tensor:
        sizes = self._boxed_sizes()
        reach = self.interpolation_nodes // 2 + 1
        occupied = [n + 2 * reach for n in self.fixed_mesh]
        distances = freespace.box_distances(cell, self.fixed_mesh, sizes)
        sampled = self.potential.lr_from_dist(distances.reshape(-1))
        ratios = [float(m) / float(n) for m, n in zip(sizes, self.fixed_mesh)]
        extended = torch.stack(
            [cell[0] * ratios[0], cell[1] * ratios[1], cell[2] * ratios[2]]
        )
        return freespace.box_filter(
            occupied,
            distances,
            sampled.reshape(distances.shape),
            self.potential.self_contribution(),
            self.kspace_filter.influence(extended, sizes),
        )

    def _partial_setup(
        self,
        cell: torch.Tensor,
        positions: torch.Tensor,
        axes: List[int],
        mesh_filter: Optional[torch.Tensor],
    ) -> Tuple[core_mesh.MeshPlan, torch.Tensor]:
        """``(plan, kernel)`` of a slab (one open axis) or a wire (two): the
        mesh doubled across the periodic rows of ``cell`` and its mixed filter
        (:mod:`torchpme._core.open_mesh`), nodes ``mesh_spacing / 2`` apart
        along the open directions; on a fixed mesh, that of the box ``cell``."""
        if self.fixed_mesh[0] > 0:
            if not torch.jit.is_scripting():
                if not compiling():
                    check_inside(cell, positions, axes)
            mesh = self._boxed_mesh(cell, axes)
        else:
            open_mesh.check_periodic_rows(cell, axes)
            lengths: List[float] = torch.linalg.norm(cell.detach(), dim=1).tolist()
            for axis in axes:
                lengths[axis] = 1.0
            mesh = open_mesh.open_mesh(
                positions,
                cell,
                axes,
                kspace.mesh_size(lengths, self.mesh_spacing),
                0.5 * self.mesh_spacing,
                self.interpolation_nodes // 2 + 1,
                self._taper(),
            )
        inverse = torch.linalg.inv_ex(mesh.cell)[0]
        plan = core_mesh.interpolation_plan(
            positions - mesh.origin, inverse, mesh.ns, self.scheme
        )
        if mesh_filter is not None:
            mesh_batch.check_mesh_filter(mesh_filter, mesh.ns, positions)
            return plan, mesh_filter
        return plan, self._partial_filter(mesh)

    def _boxed_mesh(self, cell: torch.Tensor, axes: List[int]) -> open_mesh.OpenMesh:
        taper = 0
        if self._taper() > 0.0:
            taper = max([self.fixed_mesh[a] for a in axes]) // 2
        reach = self.interpolation_nodes // 2 + 1
        return open_mesh.boxed_mesh(cell, axes, self.fixed_mesh, reach, taper)

    def _partial_filter(self, mesh: open_mesh.OpenMesh) -> torch.Tensor:
        smearing = self.potential.smearing
        assert smearing is not None  # check_range_separated
        prefactor = self.potential.prefactor
        exponent = self.open_exponent
        if len(mesh.axes) == 1:
            kernel = slab.slab_filter(mesh, smearing, prefactor, exponent)
        else:
            kernel = wire.wire_filter(mesh, smearing, prefactor, exponent)
        return kernel * self.kspace_filter.influence(mesh.cell, mesh.ns)

    def _open_setup(
        self,
        cell: torch.Tensor,
        positions: torch.Tensor,
        periodic: Optional[torch.Tensor],
        mesh_filter: Optional[torch.Tensor] = None,
    ) -> Optional[Tuple[core_mesh.MeshPlan, torch.Tensor]]:
        """``(plan, kernel)`` of a cluster, a wire, or a slab with the exact
        method; None for the other boundary conditions."""
        if freespace.is_cluster(periodic):
            return self._cluster_setup(cell, positions, mesh_filter)
        axes = open_mesh.open_axes(periodic)
        if len(axes) > 0 and self._on_own_mesh(3 - len(axes)):
            return self._partial_setup(cell, positions, axes, mesh_filter)
        return None

    def _on_own_mesh(self, n_periodic: int) -> bool:
        """Clusters, wires and, with the exact method, slabs: their meshes
        follow their atoms."""
        if n_periodic == 2:
            return self.slab_method == "exact"
        return n_periodic < 2

    def _taper(self) -> float:
        """Length over which the kernel of a cluster, wire or exact slab is
        tapered past the atoms (none: the Lagrange weights need no
        deconvolution)."""
        return 0.0
