"""Slabs (two periodic directions) on the mesh: the exact 2-D periodic sum.

The cell's two periodic lattice vectors ``a_p, a_q`` span the plane; the open
direction is its normal ``n̂ = a_p × a_q / A`` (``A = ‖a_p × a_q‖``), whatever
the third lattice vector is. The mesh cell keeps ``a_p, a_q`` and replaces the
third vector by ``L n̂``: the atoms' heights ``z = r · n̂``, widened by the
stencil's reach, occupy ``m`` nodes of spacing ``s`` along ``n̂``, and the mesh
has ``n ≥ 2m`` of them (``L = n s``), so the circular convolution along the
normal is the free one (Hockney & Eastwood's doubling along one axis).

The kernel is the long-range potential summed over the in-plane images in a
mixed representation: a Fourier series in the plane, a function of the height
difference ``z`` along the normal. For ``erf(r/√2σ)/r`` (α = 1/√2σ), Parry's
2-D Ewald sum gives, for the in-plane wave vectors ``k ≠ 0``,

.. math::

    F(k, z) = \\frac{π}{A k} \\left[e^{kz} \\operatorname{erfc}\\left(\\frac{k}{2α}
    + αz\\right) + e^{−kz} \\operatorname{erfc}\\left(\\frac{k}{2α}
    − αz\\right)\\right]

and for ``k = 0`` (which holds any net charge, without background)

.. math::

    F(0, z) = −\\frac{2π}{A}\\left[z \\operatorname{erf}(αz)
    + \\frac{e^{−α^2 z^2}}{α\\sqrt{π}}\\right].

``F`` is sampled at the wrapped height differences of the mesh and transformed
along the normal: the filter is ``G(k, k_z) = DFT_z[w F] / n`` with the window
``w`` of :func:`torchpme._core.freespace.taper_window` (1 between occupied
nodes). For P3M, whose influence function deconvolves the assignment and so
amplifies the high frequencies of the kernel's wrap-around, the mesh extends
four smearings past the occupied heights and ``w`` tapers over them, as for
clusters (either one alone leaves force errors of 1e-4 to 1e-2 on a 150-ion
slab). In the plane the sum is spectral, as in the bulk; the error terms are
those of PME (interpolation of order ``n``, the aliasing of ``G``) along every
axis. The box along the normal snaps to multiples of ``s``: energies are
differentiable between such steps, and the cell's extent along its third vector
changes nothing.

References: Parry, Surf. Sci. 49, 433 (1975), doi:10.1016/0039-6028(75)90353-7;
Hockney & Eastwood, Computer Simulation Using Particles (1988),
doi:10.1201/9780367806934.
"""

import math
from typing import List, NamedTuple, Optional

import torch

from . import workload
from .execution import transformed
from .freespace import smooth_size, taper_window, wrapped_displacements
from .kspace import fft_frequencies, reciprocal_cell

__all__ = ["SlabMesh", "coulomb_slab_kernel", "open_axis", "slab_filter", "slab_mesh"]


def open_axis(periodic: Optional[torch.Tensor]) -> int:
    """The index of the one non-periodic lattice vector of a slab, else −1;
    read on the host (−1 under a ``torch.func`` transform, as
    :func:`torchpme._core.freespace.is_cluster`)."""
    if periodic is None:
        return -1
    if not torch.jit.is_scripting():
        if transformed(periodic):
            return -1
    flags: List[bool] = periodic.tolist()
    axis = -1
    for d in range(3):
        if not flags[d]:
            if axis >= 0:
                return -1
            axis = d
    return axis


class SlabMesh(NamedTuple):
    """The mesh of a slab.

    Attributes:
        cell: ``(3, 3)`` mesh cell: the periodic rows of the cell and ``L n̂``
            in the row of the open axis.
        origin: ``(3,)`` a point of the mesh's lowest plane, along ``n̂``.
        ns: nodes per axis.
        axis: the open axis (row of ``cell``).
        occupied: nodes along the normal that atoms' stencils reach.
        spacing: node spacing ``s`` along the normal.
    """

    cell: torch.Tensor
    origin: torch.Tensor
    ns: List[int]
    axis: int
    occupied: int
    spacing: float


def slab_mesh(
    positions: torch.Tensor,
    cell: torch.Tensor,
    axis: int,
    in_plane: List[int],
    spacing: float,
    reach: int,
    taper: float,
) -> SlabMesh:
    """The mesh of atoms at ``positions`` periodic along the other rows of
    ``cell`` (their heights are read on the host).

    Args:
        positions: ``(N, 3)`` Cartesian positions.
        cell: ``(3, 3)`` cell; row ``axis`` is ignored.
        axis: the open axis.
        in_plane: nodes per axis (the entry of ``axis`` is ignored).
        spacing: node spacing ``s`` along the normal.
        reach: nodes a stencil reaches beyond an atom's node, on either side.
        taper: length over which the kernel goes to zero beyond the occupied
            heights (see :func:`torchpme._core.freespace.cluster_filter`).
    """
    first, second = (axis + 1) % 3, (axis + 2) % 3
    normal = torch.linalg.cross(cell[first], cell[second])
    normal = normal / torch.linalg.norm(normal)
    heights = positions.detach() @ normal.detach()
    low = math.floor(float(heights.min()) / spacing) - reach
    high = math.ceil(float(heights.max()) / spacing) + reach
    occupied = high - low + 1
    extra = 2 * math.ceil(taper / spacing)
    ns = list(in_plane)
    ns[axis] = smooth_size(2 * occupied + extra)
    if not torch.jit.is_scripting():
        _check_size(ns, spacing)
    rows = [cell[0], cell[1], cell[2]]
    rows[axis] = normal * (ns[axis] * spacing)
    return SlabMesh(
        torch.stack(rows), normal * (low * spacing), ns, axis, occupied, spacing
    )


@torch.jit.unused
def _check_size(ns: List[int], spacing: float) -> None:
    workload.check_mesh(
        [float(n) for n in ns],
        "mesh_spacing",
        f"{2.0 * spacing:g} for a slab",
    )


def _exp_erfc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``e^{2ab} erfc(a + b)`` for ``a ≥ 0`` without overflow: with ``s = a + b``
    it is ``e^{−a²−b²} erfcx(s)``, and ``2 e^{2ab} − e^{−a²−b²} erfcx(−s)`` for
    ``s < 0`` (where ``2ab ≤ 0``); both branches stay finite."""
    s = a + b
    scaled = torch.exp(-a * a - b * b) * torch.special.erfcx(s.abs())
    growing = 2.0 * torch.exp(torch.clamp(2.0 * a * b, max=0.0))
    return torch.where(s >= 0, scaled, growing - scaled)


def coulomb_slab_kernel(
    k: torch.Tensor, z: torch.Tensor, smearing: float, area: torch.Tensor
) -> torch.Tensor:
    """``F(k, z)`` of ``erf(r/√2σ)/r`` summed over a 2-D lattice of cell area
    ``A`` (the module's formulas), broadcast over ``k ≥ 0`` and ``z``."""
    alpha = 1.0 / (math.sqrt(2.0) * smearing)
    flat = k == 0.0
    k_safe = torch.where(flat, torch.ones_like(k), k)
    a = 0.5 * k_safe / alpha
    b = alpha * z
    layered = (math.pi / area) / k_safe * (_exp_erfc(a, b) + _exp_erfc(a, -b))
    uniform = (-2.0 * math.pi / area) * (
        z * torch.erf(b) + torch.exp(-b * b) / (alpha * math.sqrt(math.pi))
    )
    return torch.where(flat, uniform, layered)


def _along(values: torch.Tensor, axis: int) -> torch.Tensor:
    shape = [1, 1, 1]
    shape[axis] = -1
    return values.reshape(shape)


def slab_filter(mesh: SlabMesh, smearing: float, prefactor) -> torch.Tensor:
    """The filter ``G = DFT_z[w F] / n`` of a slab mesh, ``(n0, n1, n2//2+1)``,
    for the Coulomb potential of smearing ``σ`` times ``prefactor``."""
    cell, axis, ns = mesh.cell, mesh.axis, mesh.ns
    reciprocal = reciprocal_cell(cell)
    k_vectors = torch.zeros((1, 1, 1, 3), dtype=cell.dtype, device=cell.device)
    for d in range(3):
        if d != axis:
            m = fft_frequencies(ns[d], d == 2, cell.dtype, cell.device)
            k_vectors = k_vectors + _along(m, d).unsqueeze(-1) * reciprocal[d]
    k_sq = torch.sum(k_vectors * k_vectors, dim=-1)
    # the norm at k = 0 has no second derivative: take it on a safe value there
    flat = k_sq == 0.0
    k = torch.where(flat, 0.0, torch.sqrt(torch.where(flat, 1.0, k_sq)))
    z = _along(wrapped_displacements(ns[axis], mesh.spacing, cell), axis)
    area = torch.abs(torch.linalg.det(cell)) / (ns[axis] * mesh.spacing)
    sampled = coulomb_slab_kernel(k, z, smearing, area)
    sampled = sampled * _along(taper_window(ns[axis], mesh.occupied, cell), axis)
    if axis == 2:
        spectrum = torch.fft.rfft(sampled, dim=2)
    else:
        spectrum = torch.fft.fft(sampled, dim=axis)
    # w F is even in z, so its transform is real up to rounding
    return spectrum.real * (prefactor / ns[axis])
