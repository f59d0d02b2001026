"""The real-space part of the Ewald sum of charges and dipoles, pair by pair.

With the screening ``α = 1/(√2 σ)`` (``σ`` the potential's smearing) the
screened interaction tensors reduce to the radial functions (Smith, CCP5
Newsletter 46 (1998); Aguado & Madden, J. Chem. Phys. 119, 7471 (2003),
doi:10.1063/1.1605941)

.. math::

    B_0 = \\frac{\\operatorname{erfc}(αr)}{r}, \\qquad
    B_l = \\frac{1}{r²}\\Big[(2l − 1) B_{l−1} + \\frac{(2α²)^l}{α\\sqrt{π}}
          e^{−α²r²}\\Big], \\qquad \\frac{dB_l}{dr} = −r B_{l+1},

(``α = 0``: ``1/r``, ``1/r³``, ``3/r⁵``). For ``R = r_i − r_j`` the potential and
field at ``i`` from the charge ``q_j`` and dipole ``μ_j`` are

.. math::

    φ = q_j B_0 + (μ_j·R) B_1, \\qquad
    E = q_j R B_1 − μ_j B_1 + (μ_j·R) R B_2,

and the pair's energy is ``q_i φ − μ_i·E``.
"""

import math
from typing import Tuple

import torch

__all__ = ["multipole_pair_fields", "radial_functions"]


def radial_functions(
    distances: torch.Tensor, alpha: float
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B_0, B_1, B_2)`` at ``(P,)`` distances (``alpha = 0``: unscreened)."""
    inverse_square = 1.0 / distances**2
    if alpha == 0.0:
        b0 = 1.0 / distances
        b1 = b0 * inverse_square
        return b0, b1, 3.0 * b1 * inverse_square
    gaussian = torch.exp(-((alpha * distances) ** 2)) / (alpha * math.sqrt(math.pi))
    b0 = torch.erfc(alpha * distances) / distances
    b1 = (b0 + 2.0 * alpha**2 * gaussian) * inverse_square
    b2 = (3.0 * b1 + 4.0 * alpha**4 * gaussian) * inverse_square
    return b0, b1, b2


def multipole_pair_fields(
    charges: torch.Tensor,
    dipoles: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_vectors: torch.Tensor,
    alpha: float,
    full_neighbor_list: bool,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(φ, E)`` at every atom, ``(N,)`` and ``(N, 3)``, from the pairs.

    Args:
        charges: ``(N,)``; dipoles: ``(N, 3)``.
        neighbor_indices: ``(P, 2)`` pairs ``(i, j)``.
        neighbor_vectors: ``(P, 3)`` the vectors ``r_j − r_i`` (of the image).
        alpha: the screening (0 for the bare sum).
        full_neighbor_list: whether each pair is listed both ways.
    """
    i, j = neighbor_indices[:, 0], neighbor_indices[:, 1]
    distances = torch.linalg.norm(neighbor_vectors, dim=1)
    b0, b1, b2 = radial_functions(distances, alpha)
    potential = torch.zeros_like(charges)
    field = torch.zeros_like(dipoles)
    # at i from j (R = r_i − r_j = −vector), and unless the list is full at j
    # from i (R = +vector)
    for target, source, sign in ((i, j, -1.0), (j, i, 1.0)):
        if sign > 0 and full_neighbor_list:
            break
        r = sign * neighbor_vectors
        q, mu = charges[source], dipoles[source]
        projection = (mu * r).sum(dim=1)
        phi = q * b0 + projection * b1
        e = (q * b1 + projection * b2).unsqueeze(1) * r - b1.unsqueeze(1) * mu
        potential = potential.index_add(0, target, phi)
        field = field.index_add(0, target, e)
    return potential, field
