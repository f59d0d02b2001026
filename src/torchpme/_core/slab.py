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
eight smearings past the occupied heights and ``w`` tapers over them, as for
clusters (:meth:`torchpme.P3MCalculator._taper`; the margin or the window
alone leaves force errors of 1e-4 to 1e-2 on a 150-ion slab). In the plane the sum is spectral, as in the bulk; the error terms are
those of PME (interpolation of order ``n``, the aliasing of ``G``) along every
axis. The box along the normal snaps to multiples of ``s``: energies are
differentiable between such steps, and the cell's extent along its third vector
changes nothing.

References: Parry, Surf. Sci. 49, 433 (1975), doi:10.1016/0039-6028(75)90353-7;
Hockney & Eastwood, Computer Simulation Using Particles (1988),
doi:10.1201/9780367806934.
"""

import math

import torch

from .mixed_kernel import powerlaw_mixed_kernel
from .open_mesh import (
    OpenMesh,
    half_displacements,
    in_mesh_order,
    open_displacements,
    open_filter,
    periodic_wavenumbers,
)

__all__ = ["coulomb_slab_kernel", "slab_filter"]


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


def slab_filter(
    mesh: OpenMesh, smearing: float, prefactor, exponent: float = 1.0
) -> torch.Tensor:
    """The filter ``G = DFT_z[w F] / n`` of a slab mesh, ``(n0, n1, n2//2+1)``,
    for ``1/r^p`` (``p = exponent``: Parry's kernel above for 1,
    :mod:`torchpme._core.mixed_kernel` for ``p > 2``) of smearing ``σ`` times
    ``prefactor``."""
    (z,) = open_displacements(mesh)
    height = mesh.ns[mesh.axes[0]] * mesh.spacings[0]
    area = torch.abs(torch.linalg.det(mesh.cell)) / height
    k = periodic_wavenumbers(mesh)
    if exponent == 1.0:
        sampled = coulomb_slab_kernel(k, z, smearing, area)
    else:
        flat = powerlaw_mixed_kernel(
            k.reshape(-1), half_displacements(mesh), smearing, exponent, area
        )
        sampled = in_mesh_order(mesh, k, flat)
    return open_filter(mesh, sampled) * prefactor
