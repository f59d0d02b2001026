"""The meshes of open systems for :class:`~torchpme.PMECalculator` and
:class:`~torchpme.P3MCalculator`: clusters, wires and exact slabs, whose meshes
are built around their atoms (or, for a cluster on a fixed mesh, its box)."""

import math
from typing import List, Optional, Tuple

import torch

from .._core import freespace, kspace, open_mesh, slab, wire
from .._core import mesh as core_mesh
from .._core.execution import compiling
from . import _mesh_batch as mesh_batch
from ._mesh_checks import check_inside, check_taper_spacing

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
        mesh = freespace.cluster_mesh(positions, spacing, self._reach(), self._taper())
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

    def _reach(self) -> int:
        """Nodes that a stencil reaches past an atom's node, on either side."""
        return self.interpolation_nodes // 2 + 1

    def _boxed_reach(self) -> int:
        """Nodes past the box that the stencils reach on a fixed mesh: one
        more than :meth:`_reach`, for atoms on a face of the box (where
        rounding may place them just outside)."""
        return self._reach() + 1

    def _boxed_taper(self, nodes: List[int]) -> int:
        """Nodes over which a fixed mesh's kernel tapers past the box: none
        for PME; for P3M the taper length of :meth:`_taper` at nodes
        ``mesh_spacing / 2`` apart (the box's nodes may not be closer, see
        :func:`check_taper_spacing`), and at least half the largest of
        ``nodes``."""
        length = self._taper()
        if length == 0.0:
            return 0
        return max(max(nodes) // 2, math.ceil(2.0 * length / self.mesh_spacing))

    def _check_box(
        self, cell: torch.Tensor, positions: torch.Tensor, axes: List[int]
    ) -> None:
        """The atoms lie in their box; for P3M, its nodes are far enough apart
        for the taper. Read on the host: in eager mode and TorchScript, not
        while ``torch.compile`` traces."""
        if not torch.jit.is_scripting():
            if compiling():
                return
        check_inside(cell, positions, axes)
        if self._taper() > 0.0:
            check_taper_spacing(cell, self.fixed_mesh, axes, self.mesh_spacing)

    def _boxed_cluster(self, cell: torch.Tensor) -> Tuple[List[int], torch.Tensor]:
        """``(sizes, cell)`` of the extended mesh of a cluster in the box
        ``cell``: the box's nodes, the stencils' reach and the taper, doubled,
        along each lattice vector of the box."""
        taper = self._boxed_taper(self.fixed_mesh)
        sizes = freespace.boxed_sizes(
            self.fixed_mesh, self._boxed_reach(), [taper, taper, taper]
        )
        rows = [
            cell[d] * (float(sizes[d]) / float(self.fixed_mesh[d])) for d in range(3)
        ]
        return sizes, torch.stack(rows)

    def _boxed_cluster_setup(
        self,
        cell: torch.Tensor,
        positions: torch.Tensor,
        mesh_filter: Optional[torch.Tensor],
    ) -> Tuple[core_mesh.MeshPlan, torch.Tensor]:
        """``(plan, kernel)`` of a cluster in the box ``cell`` (atoms inside it,
        its corner at the origin) with ``fixed_mesh`` nodes per lattice vector:
        shapes fixed before the call, and the filter may be kept
        (:meth:`mesh_filter`). Under ``torch.compile`` nothing is read on the
        host, so atoms outside the box are not detected there."""
        self._check_box(cell, positions, [0, 1, 2])
        sizes, extended = self._boxed_cluster(cell)
        inverse = torch.linalg.inv_ex(extended)[0]
        plan = core_mesh.interpolation_plan(positions, inverse, sizes, self.scheme)
        if mesh_filter is not None:
            mesh_batch.check_mesh_filter(mesh_filter, sizes, positions)
            return plan, mesh_filter
        return plan, self._boxed_filter(cell)

    def _boxed_filter(self, cell: torch.Tensor) -> torch.Tensor:
        sizes, extended = self._boxed_cluster(cell)
        occupied = [n + 2 * self._boxed_reach() for n in self.fixed_mesh]
        distances = freespace.box_distances(cell, self.fixed_mesh, sizes)
        sampled = self.potential.lr_from_dist(distances.reshape(-1))
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
            self._check_box(cell, positions, axes)
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
                self._reach(),
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
        taper = self._boxed_taper([self.fixed_mesh[a] for a in axes])
        return open_mesh.boxed_mesh(
            cell, axes, self.fixed_mesh, self._boxed_reach(), taper
        )

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

    def _open_axes(self, periodic: Optional[torch.Tensor]) -> List[int]:
        """The open axes of a system on a mesh of its own (a cluster: all
        three; a wire, or a slab with the exact method: those not periodic),
        else ``[]``."""
        if freespace.is_cluster(periodic):
            return [0, 1, 2]
        axes = open_mesh.open_axes(periodic)
        if len(axes) > 0 and self._on_own_mesh(3 - len(axes)):
            return axes
        return []

    def _open_setup(
        self,
        cell: torch.Tensor,
        positions: torch.Tensor,
        periodic: Optional[torch.Tensor],
        mesh_filter: Optional[torch.Tensor] = None,
    ) -> Optional[Tuple[core_mesh.MeshPlan, torch.Tensor]]:
        """``(plan, kernel)`` of a cluster, a wire, or a slab with the exact
        method; None for the other boundary conditions."""
        axes = self._open_axes(periodic)
        if len(axes) == 3:
            return self._cluster_setup(cell, positions, mesh_filter)
        if len(axes) > 0:
            return self._partial_setup(cell, positions, axes, mesh_filter)
        return None

    def _boxed_open_filter(
        self, cell: torch.Tensor, periodic: Optional[torch.Tensor]
    ) -> Optional[torch.Tensor]:
        """The filter of a system on a fixed mesh of its own in the box
        ``cell`` (None if there is no such system)."""
        axes = self._open_axes(periodic)
        if self.fixed_mesh[0] == 0 or len(axes) == 0:
            return None
        if len(axes) == 3:
            return self._boxed_filter(cell)
        return self._partial_filter(self._boxed_mesh(cell, axes))

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
