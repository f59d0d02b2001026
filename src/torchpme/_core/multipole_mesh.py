"""Point dipoles and quadrupoles on the mesh: the charge pipeline run over
derivative weights.

A multipole is the limit of nearby charges, of density
``ρ = q δ − μ·∇δ + ⅓ Θ:∇∇δ`` (``δ = δ(x − r)``, Buckingham's traceless ``Θ``),
and ``∇_x δ(x − r) = −∇_r δ(x − r)``, so its share of mesh node ``t`` is

.. math::

    q W_t + μ·∇_r W_t + ⅓ Θ:∇_r∇_r W_t .

With the scaled fractional coordinates ``u_d = n_d (r A⁻¹)_d`` (``A`` the cell,
rows the lattice vectors) the Jacobian ``J_{ad} = ∂u_d/∂r_a = n_d (A⁻¹)_{ad}`` is
constant, so ``μ·∇_r W = Σ_d μ̃_d ∂W/∂u_d`` with ``μ̃ = μJ`` and
``Θ:∇_r∇_r W = Σ_{de} Θ̃_{de} ∂²W/∂u_d∂u_e`` with ``Θ̃ = JᵀΘJ``, where each
``∂W/∂u`` is the separable product with the 1-D weights of the differentiated
axes replaced by their derivatives. Spreading is thus one spread of ``4N``
entries (charges and dipoles: each atom with ``W`` and with ``∂W/∂u_d``) or
``10N`` (also the six ``∂²W/∂u_d∂u_e``, ``d ≤ e``); gathering the filtered mesh
with the same entries gives ``φ``, ``∂φ/∂u`` and ``∂²φ/∂u∂u`` at each atom, so
``∇φ = J ∂φ/∂u`` and ``∇∇φ = J (∂²φ/∂u∂u) Jᵀ``. It is one call of
:func:`torchpme._core.mesh.convolve`: the pipeline's autograd (derivatives of any
order), chunking and kernels apply unchanged.

The weights must be smooth functions of the position for this to converge
smoothly: the B-splines of P3M are (``n − 2`` times differentiable); the
Lagrange weights of PME are continuous with discontinuous derivatives, so a PME
dipole energy jumps slightly where an atom crosses between nodes.

Reference: Cerdà, Ballenegger, Lenz & Holm, J. Chem. Phys. 129, 234104 (2008),
doi:10.1063/1.3000389 (dipolar P3M); Sagui, Pedersen & Darden, J. Chem. Phys.
120, 73 (2004), doi:10.1063/1.1630791 (multipolar PME).
"""

from typing import List, Optional, Tuple

import torch

from .mesh import MeshPlan, convolve, placement
from .weights import Scheme, _derivative, evaluate_weights

__all__ = ["convolve_multipoles", "multipole_plan"]


def _pairs() -> Tuple[List[int], List[int]]:
    """The ``(d, e)``, ``d ≤ e``, of the second-derivative entries, in order:
    00, 01, 02, 11, 12, 22 (lists, which TorchScript takes)."""
    return [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]


def multipole_plan(
    positions: torch.Tensor,
    inverse_cell: torch.Tensor,
    ns: List[int],
    scheme: Scheme,
    order: int,
    mesh_index: Optional[torch.Tensor] = None,
    n_meshes: int = 0,
) -> MeshPlan:
    """The :class:`~torchpme._core.mesh.MeshPlan` of ``4N`` (``order`` 1) or
    ``10N`` (``order`` 2) entries: the atoms with their weights, then with the
    weights differentiated along each axis (and each pair of axes). As
    :func:`~torchpme._core.mesh.interpolation_plan`, ``inverse_cell`` may be one
    per atom and ``mesh_index``/``n_meshes`` a stack of meshes (a batch)."""
    where = placement(
        positions, inverse_cell, ns, scheme.coefficients.shape[0], mesh_index
    )
    # the weights and their derivatives, all at the one placement
    coefficients = scheme.coefficients
    tables = [evaluate_weights(where.offsets, coefficients)]
    for _ in range(order):
        coefficients = _derivative(coefficients)
        tables.append(evaluate_weights(where.offsets, coefficients))
    blocks = [tables[0]]
    first, second = _pairs()
    wanted: List[List[int]] = [[0], [1], [2]]
    if order == 2:
        for k in range(6):
            wanted.append([first[k], second[k]])
    for axes in wanted:
        rows: List[torch.Tensor] = []
        for a in range(3):
            times = 0  # how often axis a is differentiated
            for axis in axes:
                times += int(axis == a)
            rows.append(tables[times][:, a])
        blocks.append(torch.stack(rows, dim=1))
    n = positions.shape[0]
    entries = len(blocks)
    return MeshPlan(
        where.stencil.repeat(entries, 1, 1),
        torch.cat(blocks),
        torch.cat([where.order + k * n for k in range(entries)]),
        list(ns),
        n_meshes,
        scheme,
    )


def convolve_multipoles(
    plan: MeshPlan,
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    quadrupoles: torch.Tensor,
    inverse_cell: torch.Tensor,
    kernel: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(φ, ∇φ, ∇∇φ)`` at the atoms, ``(N,)``, ``(N, 3)`` and ``(N, 3, 3)``
    Cartesian, of the filtered mesh of charges ``(N,)``, dipoles ``(N, 3)`` and
    quadrupoles ``(N, 3, 3)`` (unnormalised transforms, as
    :func:`~torchpme._core.mesh.convolve`); the plan's order decides whether the
    quadrupoles spread and ``∇∇φ`` is gathered (otherwise an empty ``(0, 3, 3)``).
    ``inverse_cell``: ``(3, 3)``, or ``(N, 3, 3)`` one per atom (a batch).
    """
    n = charges.shape[0]
    sizes = torch.tensor(plan.shape, dtype=charges.dtype, device=charges.device)
    jacobian = inverse_cell.to(charges.dtype) * sizes  # J_ad = n_d A⁻¹_ad
    transposed = jacobian.transpose(-1, -2)
    scaled_dipoles = (dipoles.unsqueeze(1) @ jacobian).squeeze(1)
    values = [charges, scaled_dipoles.t().reshape(-1)]
    has_second = plan.weights.shape[0] == 10 * n
    first, second = _pairs()
    if has_second:
        scaled = transposed @ quadrupoles @ jacobian
        for k in range(6):
            d, e = first[k], second[k]
            weight = 1.0 / 3.0 if d == e else 2.0 / 3.0
            values.append(weight * scaled[:, d, e])
    result = convolve(plan, torch.cat(values).unsqueeze(1), kernel)[:, 0]
    slopes = result[n : 4 * n].reshape(3, n).t()
    gradient = (slopes.unsqueeze(1) @ transposed).squeeze(1)
    if not has_second:
        return result[:n], gradient, charges.new_zeros(0, 3, 3)
    blocks = result[4 * n :].reshape(6, n)
    # the slot of (d, e) among the six, either order
    slots = [[0, 1, 2], [1, 3, 4], [2, 4, 5]]
    rows: List[torch.Tensor] = []
    for d in range(3):
        rows.append(torch.stack([blocks[slots[d][e]] for e in range(3)], 1))
    hessian_u = torch.stack(rows, dim=1)  # (N, 3, 3): ∂²φ/∂u_d∂u_e
    return result[:n], gradient, jacobian @ hessian_u @ transposed
