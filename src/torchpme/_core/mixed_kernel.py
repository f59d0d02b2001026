"""Mixed kernels of inverse power laws: a Fourier series along the periodic
directions of a wire or a slab, a function of the displacement along the open
ones.

The long-range part of ``1/r^p`` split by a Gaussian of smearing ``σ``
(:class:`~torchpme.InversePowerLawPotential`, ``α² = 1/2σ²``) is a superposition
of Gaussians,

.. math::

    v_{lr}(r) = \\frac{P(p/2, α^2 r^2)}{r^p}
    = \\frac{1}{Γ(p/2)} \\int_0^{α^2} t^{p/2 − 1} e^{−t r^2} \\, dt,

and each Gaussian sums over a lattice of ``P`` periodic directions (cell
measure ``Ω``: a wire's length, a slab's area) by Poisson's formula, so that
the image sum is ``Σ_k e^{ik·x} F(k, d)`` with, for ``a = (p − P)/2 > 0``,

.. math::

    F(k, d) = \\frac{π^{P/2}}{Ω Γ(p/2)} \\int_0^{α^2} t^{a − 1}
    \\exp\\left(−t d^2 − \\frac{k^2}{4t}\\right) dt

where ``d`` is the distance across the periodic directions. For ``k ≠ 0`` the
integral is taken in ``x = ln(t/α²)`` on ``[x_k, 0]``, below which the factor
``e^{−k²/4t}`` is under ``e^{−40}``, by the tanh-sinh rule of Takahashi & Mori,
doi:10.2977/prims/1195192451; the integrand factorises over the components of
``d``, so the kernel on a mesh is a (batched) matrix product. For ``k = 0`` it
is the lower incomplete gamma function,
``F(0, d) = C α^{2a} Γ(a) P(a, α²d²) / (α²d²)^a``, finite for ``a > 0``
(``p > P``: the sums over the images converge absolutely). Coulomb wires
(``a = 0``) and slabs (``a = −½``) have closed forms of their own
(:mod:`torchpme._core.wire`, :mod:`torchpme._core.slab`).
"""

import math
from typing import List, Tuple

import torch

__all__ = ["layered_integral", "powerlaw_mixed_kernel", "tanh_sinh"]


def tanh_sinh(
    step: float, count: int, like: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``s = tanh(π/2 sinh t)`` in ``(−1, 1)`` and weights of the
    tanh-sinh rule at ``t = j·step``, ``|j| ≤ count``: the weights fall
    double-exponentially at both ends, so the trapezoidal sum in ``t``
    converges exponentially in ``1/step`` for integrands analytic inside."""
    t = torch.arange(-count, count + 1, dtype=like.dtype, device=like.device) * step
    inner = 0.5 * math.pi * torch.sinh(t)
    weights = step * 0.5 * math.pi * torch.cosh(t) / torch.cosh(inner) ** 2
    return torch.tanh(inner), weights


def layered_integral(
    k: torch.Tensor, displacements: List[torch.Tensor], alpha_sq: float, power: float
) -> torch.Tensor:
    """``∫_0^{α²} t^{power − 1} exp(−t |d|² − k²/4t) dt`` for ``k > 0`` ``(K,)``
    and ``|d|² = Σ_c d_c²`` over the grid of one ``(A,)`` or two ``(A,)``,
    ``(B,)`` displacement components: ``(K, A)`` or ``(K, A, B)`` (the entries
    at ``k = 0`` are finite and meaningless).

    In ``x = ln(t/α²)`` on the nodes ``x_j`` of a rule on ``[x_k, 0]``
    (``x_k = ln(k²/4α² / 40)``), the integral is ``Σ_j W_kj Π_c e^{−t_j d_c²}``.
    """
    flat = k == 0.0
    quarter = torch.where(flat, torch.ones_like(k), k) ** 2 / (4.0 * alpha_sq)
    # where k²/4α² ≥ 40 the integrand is under e^{−40} everywhere: those
    # wavenumbers (most of a fine mesh's) are left at zero
    active = torch.nonzero(quarter < 40.0).reshape(-1)
    quarter = quarter.index_select(0, active)
    half_width = -0.5 * torch.log(quarter / 40.0)
    nodes, weights = tanh_sinh(0.025, 128, k)
    x = -half_width.unsqueeze(1) * (1.0 - nodes)  # (K', J), in [x_k, 0]
    scale = torch.exp(x)
    t = alpha_sq * scale
    # dt = t dx: the rule's weights times t^power
    factors = (
        weights * half_width.unsqueeze(1) * torch.exp(-quarter.unsqueeze(1) / scale)
    )
    if power != 0.0:
        factors = factors * t**power
    first = torch.exp(-t.unsqueeze(2) * displacements[0].square())  # (K', J, A)
    if len(displacements) == 1:
        values = torch.einsum("kj,kja->ka", factors, first)
    else:
        second = torch.exp(-t.unsqueeze(2) * displacements[1].square())
        values = torch.bmm((first * factors.unsqueeze(2)).transpose(1, 2), second)
    shape = [k.shape[0]] + [d.shape[0] for d in displacements]
    return values.new_zeros(shape).index_copy(0, active, values)


def powerlaw_mixed_kernel(
    k: torch.Tensor,
    displacements: List[torch.Tensor],
    smearing: float,
    exponent: float,
    measure: torch.Tensor,
) -> torch.Tensor:
    """``F(k, d)`` of the module for ``1/r^p`` (``p = exponent``) over a lattice
    of ``P = 3 − len(displacements)`` periodic directions of cell measure
    ``Ω`` (``measure``): ``(K, A)`` for a slab (one open component), ``(K, A,
    B)`` for a wire (two), ``k ≥ 0`` ``(K,)``; needs ``p > P``."""
    n_periodic = 3 - len(displacements)
    power = 0.5 * (exponent - n_periodic)
    alpha_sq = 0.5 / (smearing * smearing)
    constant = math.pi ** (0.5 * n_periodic) / (measure * math.gamma(0.5 * exponent))
    layered = layered_integral(k, displacements, alpha_sq, power)
    squared = displacements[0].square()
    if len(displacements) == 2:
        squared = squared.unsqueeze(1) + displacements[1].square().unsqueeze(0)
    # F(0, d) = C Γ(a) γ(a, α²d²)/d^{2a} = C α^{2a} Γ(a) P(a, x)/x^a, whose
    # limit at d = 0 is C α^{2a}/a (taken there: x^a underflows in float32)
    zero = squared == 0.0
    scaled = alpha_sq * torch.where(zero, torch.ones_like(squared), squared)
    a = torch.full_like(scaled, power)
    ratio = torch.special.gammainc(a, scaled) / scaled**power
    uniform = alpha_sq**power * torch.where(
        zero, torch.full_like(ratio, 1.0 / power), math.gamma(power) * ratio
    )
    shape = [-1] + [1] * len(displacements)
    flat = (k == 0.0).reshape(shape)
    return constant * torch.where(flat, uniform, layered)
