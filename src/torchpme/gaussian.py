"""Gaussian charges of per-atom widths, on top of any point-charge calculator.

Atom ``i`` carries the charge ``q_i`` spread as a Gaussian of standard deviation
``σ_i``, ``ρ_i(r) = q_i (2πσ_i²)^{−3/2} e^{−r²/2σ_i²}``; two such charges interact by

.. math::

    v_{ij}(r) = \\frac{\\operatorname{erf}(r / \\sqrt{2} γ_{ij})}{r},
    \\qquad γ_{ij} = \\sqrt{σ_i² + σ_j²},

the point-charge ``1/r`` as ``σ → 0``. The difference from point charges,
``−erfc(r/√2γ_ij)/r``, is short-ranged, so the Gaussian system is the point-charge
result of any calculator (direct, Ewald, PME, P3M, whatever its smearing) plus that
difference summed over the calculator's neighbour pairs. In a 3-D periodic system
with a net charge the energy is defined, as for point charges, with the ``k = 0``
term of every interaction dropped (a neutralising background): the difference's
``k = 0`` term ``−2πγ_ij²/V`` is then added back,
``ΔE = (2π/V) Q Σ_i q_i σ_i²``. Optionally the Gaussians' own energy
``Σ_i q_i² / (2√π σ_i)`` (the ``i = j`` term of ``v``) is included.

Exact to ``erfc(r_c/√2γ_max)``: the neighbour list must hold every pair closer than
a cutoff ``r_c`` several ``√2 γ_max`` (``erfc(3) = 2e-5``, ``erfc(4) = 2e-8``); the
widths may be learned (gradients flow to them), as may the charges and positions.

The splitting of the Gaussian interaction into a reciprocal part with per-atom
factors ``e^{−k²σ_i²/2}`` is the same sum (tests/test_gaussian.py checks one against
the other). Reference: the Gaussian charges of charge equilibration, Rappé &
Goddard, J. Phys. Chem. 95, 3358 (1991), doi:10.1021/j100161a070.
"""

import math
from typing import Optional

import torch

from ._core.pairlist import columns, indices_of
from ._core.pairs import pair_sum
from ._core.validation import (
    check_finite,
    check_like,
    check_shape,
    count_periodic,
    message,
)
from ._utils import _validate_parameters
from .potentials import CoulombPotential

__all__ = ["gaussian_potentials"]


def gaussian_potentials(
    calculator: torch.nn.Module,
    charges: torch.Tensor,
    widths: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_distances: torch.Tensor,
    periodic: Optional[torch.Tensor] = None,
    self_energy: bool = False,
) -> torch.Tensor:
    """Per-atom potentials ``V_i`` of Gaussian charges (``E = Σ q_i V_i``).

    Args:
        calculator: a calculator with a :class:`~torchpme.CoulombPotential` (its
            prefactor, method and options apply to the point-charge part).
        charges: ``(N, C)`` charges.
        widths: ``(N,)`` standard deviations ``σ_i > 0`` of the Gaussians.
        cell: ``(3, 3)`` cell (zeros for a cluster).
        positions: ``(N, 3)`` positions.
        neighbor_indices: ``(P, 2)`` pairs within the cutoff (half or full, as the
            calculator's ``full_neighbor_list``), which must exceed several
            ``√2·γ_max`` (see the module docstring); or a
            :class:`~torchpme.neighbors.PairList` (what a solver calling this many
            times should pass).
        neighbor_distances: ``(P,)`` their distances.
        periodic: ``(3,)`` bools as for the calculator; a net charge is accepted
            for clusters and 3-D periodic systems only.
        self_energy: include the Gaussians' own energy ``q_i²/(2√π σ_i)``.

    Returns:
        ``(N, C)`` potentials; the energy is ``(charges * result).sum()``.

    Example:
        >>> from torchpme import Calculator, CoulombPotential
        >>> positions = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
        >>> charges = torch.tensor([[1.0], [-1.0]])
        >>> widths = torch.tensor([0.3, 0.4])
        >>> pairs = torch.tensor([[0, 1]])
        >>> potential = gaussian_potentials(
        ...     Calculator(CoulombPotential()), charges, widths, torch.zeros(3, 3),
        ...     positions, pairs, torch.tensor([1.0]))
        >>> round(float((charges * potential).sum()), 6)  # −erf(1/(√2·0.5))
        -0.9545
    """
    check_gaussians(calculator, widths, positions)
    # the calculator checks the rest (and the cell it needs)
    _validate_parameters(
        charges,
        cell,
        positions,
        neighbor_indices,
        neighbor_distances,
        periodic,
        cell_required=False,
    )
    n_periodic = count_periodic(periodic)
    check_open_neutral(charges.sum(dim=0), charges.abs().sum(), n_periodic)
    return potentials_of(
        calculator, charges, widths, cell, positions, neighbor_indices,
        neighbor_distances, periodic, self_energy, n_periodic,
    )  # fmt: skip


def check_gaussians(calculator: torch.nn.Module, widths, positions) -> None:
    """The calculator (a Coulomb potential) and ``(N,)`` finite widths ``> 0``."""
    if not isinstance(getattr(calculator, "potential", None), CoulombPotential):
        raise TypeError(
            message(
                "calculator",
                "a calculator with a CoulombPotential (Gaussian charges interact by "
                "Coulomb's law)",
                type(getattr(calculator, "potential", None)).__name__,
            )
        )
    check_shape("widths", widths, [positions.shape[0]], "(N,) with N atoms")
    check_like("widths", widths, positions, "positions")
    check_finite("widths", widths)
    if not bool((widths > 0).all()):
        raise ValueError(message("widths", "> 0", "widths <= 0"))


def check_open_neutral(net: torch.Tensor, scale, n_periodic: int) -> None:
    """Refuse a net charge ``net`` (relative to ``scale``) on a wire or slab."""
    if n_periodic in (1, 2) and bool((net.abs() > 1e-12 * scale).any()):
        raise ValueError(
            message(
                "charges",
                "neutral for a wire or slab of Gaussian charges",
                f"net charge {net.tolist()}",
            )
        )


def potentials_of(
    calculator: torch.nn.Module,
    charges: torch.Tensor,
    widths: torch.Tensor,
    cell: torch.Tensor,
    positions: torch.Tensor,
    neighbor_indices: torch.Tensor,
    neighbor_distances: torch.Tensor,
    periodic: Optional[torch.Tensor],
    self_energy: bool,
    n_periodic: int,
) -> torch.Tensor:
    """:func:`gaussian_potentials` on checked inputs (a solver checks once and
    calls this every iteration)."""
    is_cluster = n_periodic == 0 or not bool(cell.detach().abs().sum() > 0)
    point = calculator(
        charges, cell, positions, neighbor_indices, neighbor_distances, periodic
    )
    prefactor = calculator.potential.prefactor.to(charges.dtype)
    first, second = columns(neighbor_indices)
    spread = torch.sqrt(2.0 * (widths[first] ** 2 + widths[second] ** 2))
    difference = -torch.erfc(neighbor_distances / spread) / neighbor_distances
    full = bool(calculator.full_neighbor_list)
    potential = point + prefactor * pair_sum(
        charges, indices_of(neighbor_indices), difference, full
    )
    if not is_cluster and n_periodic == 3:
        # the k = 0 terms −2πγ_ij²/V of the differences, for E = Σ q_i V_i
        volume = torch.abs(torch.linalg.det(cell))
        weighted = (charges * (widths**2).unsqueeze(1)).sum(dim=0)
        shift = charges.sum(dim=0) * (widths**2).unsqueeze(1) + weighted
        potential = potential + prefactor * math.pi / volume * shift
    if self_energy:
        own = charges / (2.0 * math.sqrt(math.pi) * widths.unsqueeze(1))
        potential = potential + prefactor * own
    return potential
