"""Point dipoles on the mesh: the charge pipeline run over derivative weights.

A dipole ``μ`` at ``r`` is the limit of a pair of charges, of density
``−μ·∇δ(x − r) = μ·∇_r δ(x − r)``; on the mesh its share of node ``t`` is
``μ·∇_r W_t(r)``. With the scaled fractional coordinates ``u_d = n_d (r A⁻¹)_d``
(``A`` the cell, rows the lattice vectors), ``∂u_d/∂r_a = n_d (A⁻¹)_{ad}`` and

.. math::

    μ·∇_r W_t = \\sum_d μ̃_d \\, ∂W_t/∂u_d, \\qquad μ̃_d = n_d (μ A⁻¹)_d,

where ``∂W_t/∂u_d`` is the separable product with the 1-D weights of axis ``d``
replaced by their derivatives. Spreading charges and dipoles together is thus
one spread of ``4N`` entries, each atom once with its charge and weights ``W``
and three times with ``μ̃_d`` and the weights differentiated along axis ``d``;
gathering the filtered mesh with the same ``4N`` entries gives ``φ_i`` and
``∂φ/∂u_d`` at each atom, so ``∇φ_i = Σ_d n_d A⁻¹[:, d] ∂φ/∂u_d``. It is one call
of :func:`torchpme._core.mesh.convolve`: the pipeline's autograd (derivatives of
any order), chunking and kernels apply unchanged.

The weights must be differentiable functions of the position for this to
converge smoothly: the B-splines of P3M are (``n − 2`` times); the Lagrange
weights of PME are continuous with discontinuous derivatives, so a PME dipole
energy jumps slightly where an atom crosses between nodes.

Reference: Cerdà, Ballenegger, Lenz & Holm, J. Chem. Phys. 129, 234104 (2008),
doi:10.1063/1.3000389 (dipolar P3M); Sagui, Pedersen & Darden, J. Chem. Phys.
120, 73 (2004), doi:10.1063/1.1630791 (multipolar PME).
"""

from typing import List, Tuple

import torch

from .mesh import MeshPlan, convolve, interpolation_plan
from .weights import Scheme, _derivative

__all__ = ["convolve_multipoles", "multipole_plan"]


def multipole_plan(
    positions: torch.Tensor, inverse_cell: torch.Tensor, ns: List[int], scheme: Scheme
) -> MeshPlan:
    """The :class:`~torchpme._core.mesh.MeshPlan` of ``4N`` entries: the atoms
    with their weights, then with the weights differentiated along each axis."""
    base = interpolation_plan(positions, inverse_cell, ns, scheme)
    slopes = scheme._replace(coefficients=_derivative(scheme.coefficients))
    derivative = interpolation_plan(positions, inverse_cell, ns, slopes).weights
    weights = [base.weights]
    for axis in range(3):
        rows = [derivative[:, a] if a == axis else base.weights[:, a] for a in range(3)]
        weights.append(torch.stack(rows, dim=1))
    n = positions.shape[0]
    order = torch.cat([base.order + k * n for k in range(4)])
    return MeshPlan(
        base.stencil.repeat(4, 1, 1),
        torch.cat(weights),
        order,
        base.shape,
        base.n_meshes,
        scheme,
    )


def convolve_multipoles(
    plan: MeshPlan,
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    inverse_cell: torch.Tensor,
    kernel: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(φ, ∇φ)`` at the atoms, ``(N,)`` and ``(N, 3)`` Cartesian, of the filtered
    mesh of charges ``(N,)`` and dipoles ``(N, 3)`` (unnormalised transforms, as
    :func:`~torchpme._core.mesh.convolve`)."""
    n = charges.shape[0]
    sizes = torch.tensor(plan.shape, dtype=charges.dtype, device=charges.device)
    scaled = (dipoles @ inverse_cell.to(charges.dtype)) * sizes
    values = torch.cat([charges, scaled.t().reshape(-1)]).unsqueeze(1)
    result = convolve(plan, values, kernel)[:, 0]
    slopes = result[n:].reshape(3, n).t() * sizes
    return result[:n], slopes @ inverse_cell.to(charges.dtype).t()
