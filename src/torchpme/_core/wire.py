"""Wires (one periodic direction) on the mesh: the exact 1-D periodic sum.

The wire's axis is its periodic lattice vector ``a`` (``L = ‖a‖``); the mesh
is doubled around the atoms across it (:mod:`torchpme._core.open_mesh`), and
the other two lattice vectors are ignored. The kernel is the long-range
potential summed over the images along the axis in a mixed representation: a
Fourier series along the axis (``k = 2πm/L``), a function of the distance
``ρ`` across it. With ``erf(αr)/r = (2/√π) ∫_0^α e^{−t²r²} dt``
(``α = 1/√2σ``), for ``k ≠ 0`` an incomplete Bessel function,

.. math::

    F(k, ρ) = \\frac{1}{L} \\int_0^{α^2} \\frac{du}{u}
    \\exp\\left(−uρ^2 − \\frac{k^2}{4u}\\right)

(integrated numerically by
:func:`torchpme._core.mixed_kernel.layered_integral`, 257 tanh-sinh nodes:
1e-14 against adaptive quadrature),
and for ``k = 0`` the potential of a line charge, zero at ``ρ = L``,

.. math::

    F(0, ρ) = −\\frac{1}{L}\\left[\\operatorname{Ein}(α^2 ρ^2) − γ
    − \\ln(α^2 L^2)\\right] \\;\\to\\; −\\frac{2}{L} \\ln\\frac{ρ}{L},

with ``Ein(x) = ∫_0^x (1 − e^{−t})/t dt = E_1(x) + \\ln x + γ``. With it the
energy does not depend on the smearing for any net charge. ``F`` is sampled at
the wrapped transverse displacements of the mesh and transformed across the
axis; the error terms are those of PME along every axis.

References: Porto, J. Phys. A 33, 6211 (2000),
doi:10.1088/0305-4470/33/35/309; Hockney & Eastwood, Computer Simulation Using
Particles (1988), doi:10.1201/9780367806934.
"""

import torch

from .mixed_kernel import layered_integral, powerlaw_mixed_kernel
from .open_mesh import (
    OpenMesh,
    half_displacements,
    in_mesh_order,
    open_filter,
    periodic_wavenumbers,
)
from .special import exp1

__all__ = ["coulomb_wire_kernel", "wire_filter"]


def _ein(x: torch.Tensor) -> torch.Tensor:
    """``Ein(x) = ∫_0^x (1 − e^{−t})/t dt`` for ``x ≥ 0``: its power series
    ``Σ (−1)^{n+1} x^n / (n·n!)`` below 2 (no cancellation near 0), else
    ``E_1(x) + ln x + γ``."""
    small = torch.clamp(x, max=2.0)
    series = torch.zeros_like(x)
    term = torch.ones_like(x)
    for n in range(1, 31):
        term = term * (-small) / n
        series = series - term / n
    large = torch.clamp(x, min=2.0)
    return torch.where(
        x < 2.0, series, exp1(large) + torch.log(large) + 0.5772156649015329
    )


def coulomb_wire_kernel(
    k: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    smearing: float,
    length: torch.Tensor,
) -> torch.Tensor:
    """``F(k, ρ)`` of ``erf(r/√2σ)/r`` summed over the images of a wire of
    period ``L`` (the module's formulas), ``(K, A, B)`` for ``k ≥ 0`` ``(K,)``
    and ``ρ² = d_1² + d_2²`` over the displacements ``first`` ``(A,)`` and
    ``second`` ``(B,)`` across the axis.

    In ``x = ln(u/α²)`` the integrand ``exp(−uρ²) exp(−k²/4u)`` factorises
    over ``d_1`` and ``d_2``: with the nodes ``x_j`` of a rule on
    ``[x_k, 0]`` (``x_k = ln(k²/4α² / 40)``, below which the integrand is
    under ``e^{−40}``), ``F = Σ_j W_kj e^{−u_j d_1²} e^{−u_j d_2²}``, a batched
    matrix product instead of exponentials on the whole mesh.
    """
    alpha_sq = 0.5 / (smearing * smearing)
    flat = k == 0.0
    layered = layered_integral(k, [first, second], alpha_sq, 0.0)
    rho_sq = (first * first).unsqueeze(1) + (second * second).unsqueeze(0)
    uniform = (
        0.5772156649015329
        + torch.log(alpha_sq * length * length)
        - _ein(alpha_sq * rho_sq)
    )
    return torch.where(flat.reshape(-1, 1, 1), uniform, layered) / length


def wire_filter(
    mesh: OpenMesh, smearing: float, prefactor, exponent: float = 1.0
) -> torch.Tensor:
    """The filter ``G = DFT_⊥[w F] / (n_1 n_2)`` of a wire mesh,
    ``(n0, n1, n2//2+1)``, for ``1/r^p`` (``p = exponent``, the Coulomb
    kernel above for 1, :mod:`torchpme._core.mixed_kernel` otherwise) of smearing
    ``σ`` times ``prefactor``."""
    across = half_displacements(mesh)
    axis = 3 - mesh.axes[0] - mesh.axes[1]
    length = torch.linalg.norm(mesh.cell[axis])
    k = periodic_wavenumbers(mesh)
    if exponent == 1.0:
        sampled = coulomb_wire_kernel(
            k.reshape(-1), across[0], across[1], smearing, length
        )
    else:
        sampled = powerlaw_mixed_kernel(
            k.reshape(-1), across, smearing, exponent, length
        )
    return open_filter(mesh, in_mesh_order(mesh, k, sampled)) * prefactor
