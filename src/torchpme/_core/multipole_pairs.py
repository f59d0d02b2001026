"""The real-space part of the Ewald sum of point multipoles, pair by pair.

With the screening ``α = 1/(√2 σ)`` (``σ`` the potential's smearing) the
screened interaction tensors reduce to the radial functions (Smith, CCP5
Newsletter 46 (1998); Aguado & Madden, J. Chem. Phys. 119, 7471 (2003),
doi:10.1063/1.1605941)

.. math::

    B_0 = \\frac{\\operatorname{erfc}(αr)}{r}, \\qquad
    B_l = \\frac{1}{r²}\\Big[(2l − 1) B_{l−1} + \\frac{(2α²)^l}{α\\sqrt{π}}
          e^{−α²r²}\\Big], \\qquad \\frac{dB_l}{dr} = −r B_{l+1},

(``α = 0``: ``1/r``, ``1/r³``, ``3/r⁵``, ``15/r⁷``, ``105/r⁹``). For
``R = r_i − r_j`` the potential at ``i`` of the charge ``q``, dipole ``μ`` and
traceless quadrupole ``Θ`` of ``j`` is ``φ = q B_0 + (μ·R) B_1 + ⅓ (R·Θ·R) B_2``
(``⅓ Θ:∇∇`` of the screened ``1/R``), the field ``E = −∇φ``,

.. math::

    E = q R B_1 − μ B_1 + (μ·R) R B_2 − ⅔ (ΘR) B_2 + ⅓ (R·Θ·R) R B_3,

and its gradient ``G_{ab} = ∂_a E_b``,

.. math::

    G = q (I B_1 − RR B_2) + (μR + Rμ + (μ·R) I) B_2 − (μ·R) RR B_3
        − ⅔ Θ B_2 + ⅔ (R(ΘR) + (ΘR)R) B_3 + ⅓ (R·Θ·R)(I B_3 − RR B_4).
"""

import math
from typing import List, Optional, Tuple

import torch

from .execution import traced

__all__ = ["multipole_pair_energy", "multipole_pair_fields", "radial_functions"]


def radial_functions(
    distances: torch.Tensor, alpha: float, count: int
) -> List[torch.Tensor]:
    """``[B_0 … B_{count−1}]`` at ``(P,)`` distances (``alpha = 0``: unscreened)."""
    inverse_square = 1.0 / distances**2
    if alpha == 0.0:
        functions = [1.0 / distances]
        for level in range(1, count):
            functions.append((2 * level - 1) * functions[-1] * inverse_square)
        return functions
    gaussian = torch.exp(-((alpha * distances) ** 2)) / (alpha * math.sqrt(math.pi))
    functions = [torch.erfc(alpha * distances) / distances]
    for level in range(1, count):
        term = (2.0 * alpha**2) ** level * gaussian
        functions.append(((2 * level - 1) * functions[-1] + term) * inverse_square)
    return functions


def multipole_pair_energy(
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_vectors: torch.Tensor,
    alpha: float,
    full_neighbor_list: bool,
) -> torch.Tensor:
    """The pairs' energy of charges ``(N,)`` and dipoles ``(N, 3)``, 0-dim: per
    pair ``q_i φ_j(r_i) − μ_i·E_j(r_i)`` with ``R = r_i − r_j``,

    .. math::

        q_i q_j B_0 + [q_i (μ_j·R) − q_j (μ_i·R)] B_1 + (μ_i·μ_j) B_1
        − (μ_i·R)(μ_j·R) B_2,

    one scalar per pair (half of it for a full list, which holds each twice).

    In eager mode through an autograd Function with analytic gradients
    (:mod:`torchpme._core.multipole_pair_grad`); TorchScript, ``torch.compile``
    and ``torch.func`` transforms run the operations below."""
    if not torch.jit.is_scripting() and not (
        traced(neighbor_vectors) or traced(charges) or traced(dipoles)
    ):
        return _energy_by_function(
            charges, dipoles, neighbor_indices, neighbor_vectors, alpha,
            full_neighbor_list,
        )  # fmt: skip
    i, j = neighbor_indices[:, 0], neighbor_indices[:, 1]
    r = -neighbor_vectors
    b = radial_functions(torch.linalg.norm(r, dim=1), alpha, 3)
    qi, qj, mi, mj = charges[i], charges[j], dipoles[i], dipoles[j]
    mi_r, mj_r = (mi * r).sum(dim=1), (mj * r).sum(dim=1)
    pair = qi * qj * b[0] + (qi * mj_r - qj * mi_r + (mi * mj).sum(dim=1)) * b[1]
    energy = (pair - mi_r * mj_r * b[2]).sum()
    return 0.5 * energy if full_neighbor_list else energy


@torch.jit.unused
def _energy_by_function(
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_vectors: torch.Tensor,
    alpha: float,
    full_neighbor_list: bool,
) -> torch.Tensor:
    # imported here: that module builds on radial_functions of this one
    from .multipole_pair_grad import pair_energy_function

    return pair_energy_function(
        charges, dipoles, neighbor_indices, neighbor_vectors, alpha,
        full_neighbor_list,
    )  # fmt: skip


def multipole_pair_fields(
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    quadrupoles: Optional[torch.Tensor],
    neighbor_indices: torch.Tensor,
    neighbor_vectors: torch.Tensor,
    alpha: float,
    full_neighbor_list: bool,
    field_gradient: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(φ, E, G)`` at every atom, ``(N,)``, ``(N, 3)`` and ``(N, 3, 3)`` (``G``
    only with ``field_gradient``, else ``(0, 3, 3)``), from the pairs.

    Args:
        charges: ``(N,)``; dipoles: ``(N, 3)``; quadrupoles: ``(N, 3, 3)``
            traceless, or None.
        neighbor_indices: ``(P, 2)`` pairs ``(i, j)``.
        neighbor_vectors: ``(P, 3)`` the vectors ``r_j − r_i`` (of the image).
        alpha: the screening (0 for the bare sum).
        full_neighbor_list: whether each pair is listed both ways.
        field_gradient: also return ``G``.
    """
    i, j = neighbor_indices[:, 0], neighbor_indices[:, 1]
    distances = torch.linalg.norm(neighbor_vectors, dim=1)
    order = 2 if quadrupoles is not None else 1
    count = 3 + order - 1 + (1 if field_gradient else 0)
    b = radial_functions(distances, alpha, max(count, 3))
    potential = torch.zeros_like(charges)
    field = torch.zeros_like(dipoles)
    gradient = dipoles.new_zeros(charges.shape[0] if field_gradient else 0, 3, 3)
    # at i from j (R = r_i − r_j = −vector), and unless the list is full at j
    # from i (R = +vector)
    directions = [(i, j, -neighbor_vectors)]
    if not full_neighbor_list:
        directions.append((j, i, neighbor_vectors))
    for target, source, r in directions:
        phi, e, g = _at_targets(
            charges, dipoles, quadrupoles, source, r, b, field_gradient
        )
        potential = potential.index_add(0, target, phi)
        field = field.index_add(0, target, e)
        if field_gradient:
            gradient = gradient.index_add(0, target, g)
    return potential, field, gradient


def _at_targets(
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    quadrupoles: Optional[torch.Tensor],
    source: torch.Tensor,
    r: torch.Tensor,
    b: List[torch.Tensor],
    field_gradient: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(φ, E, G)`` per pair of the ``source`` atoms' multipoles at ``R = r``
    (the module docstring's formulas; ``G`` empty without ``field_gradient``)."""
    q, mu = charges[source], dipoles[source]
    mu_r = (mu * r).sum(dim=1)
    phi = q * b[0] + mu_r * b[1]
    e = _col(q * b[1] + mu_r * b[2]) * r - _col(b[1]) * mu
    theta_r = torch.zeros_like(r)
    r_theta_r = torch.zeros_like(q)
    if quadrupoles is not None:
        theta_r = (quadrupoles[source] @ r.unsqueeze(2)).squeeze(2)
        r_theta_r = (theta_r * r).sum(dim=1)
        phi = phi + r_theta_r * b[2] / 3.0
        e = e - _col(b[2]) * theta_r * (2.0 / 3.0) + _col(r_theta_r * b[3]) * r / 3.0
    if not field_gradient:
        return phi, e, r.new_zeros(0, 3, 3)
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    rr = r.unsqueeze(2) * r.unsqueeze(1)
    g = _mat(q * b[1] + mu_r * b[2]) * eye - _mat(q * b[2] + mu_r * b[3]) * rr
    g = g + _mat(b[2]) * (
        mu.unsqueeze(2) * r.unsqueeze(1) + r.unsqueeze(2) * mu.unsqueeze(1)
    )
    if quadrupoles is not None:
        outer = r.unsqueeze(2) * theta_r.unsqueeze(1)
        g = g - _mat(b[2]) * quadrupoles[source] * (2.0 / 3.0)
        g = g + _mat(b[3]) * (outer + outer.transpose(1, 2)) * (2.0 / 3.0)
        g = g + _mat(r_theta_r / 3.0) * (_mat(b[3]) * eye - _mat(b[4]) * rr)
    return phi, e, g


def _col(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(1)


def _mat(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(1).unsqueeze(2)
