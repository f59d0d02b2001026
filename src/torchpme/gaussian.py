"""Gaussian charges of per-atom widths, on top of any point-charge calculator.

Atom ``i`` carries the charge ``q_i`` spread as a Gaussian of standard deviation
``σ_i``, ``ρ_i(r) = q_i (2πσ_i²)^{−3/2} e^{−r²/2σ_i²}``; two such charges interact by

.. math::

    v_{ij}(r) = \\frac{\\operatorname{erf}(r / \\sqrt{2} γ_{ij})}{r},
    \\qquad γ_{ij} = \\sqrt{σ_i² + σ_j²},

the point-charge ``1/r`` as ``σ → 0``. The difference from point charges,
``−erfc(r/√2γ_ij)/r``, is short-ranged, so the Gaussian system is the point-charge
result of any calculator (direct, Ewald, PME, P3M, whatever its smearing) plus that
difference summed over the calculator's neighbour pairs. A reciprocal-space
calculator (Ewald, PME, P3M) of a 3-D periodic system defines the energy, as for
point charges, with the ``k = 0`` term of every interaction dropped (a
neutralising background for a net charge): the difference's ``k = 0`` term
``−2πγ_ij²/V`` is then added back, ``ΔE = (2π/V) Q Σ_i q_i σ_i²``; a direct sum
over the pairs has no such term. Optionally the Gaussians' own energy
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

__all__ = ["GaussianCharges", "gaussian_potentials"]


class GaussianCharges(torch.nn.Module):
    """Per-atom potentials ``V_i`` of Gaussian charges (``E = Σ q_i V_i``) over a
    point-charge calculator (module docstring); scriptable, with a batch method.

    Args:
        calculator: a calculator with a :class:`~torchpme.CoulombPotential` (its
            prefactor, method and options apply to the point-charge part).
        self_energy: include the Gaussians' own energy ``q_i²/(2√π σ_i)``.

    Example:
        >>> from torchpme import Calculator, CoulombPotential
        >>> gaussians = torch.jit.script(GaussianCharges(Calculator(CoulombPotential())))
        >>> positions = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
        >>> charges = torch.tensor([[1.0], [-1.0]])
        >>> potential = gaussians(charges, torch.tensor([0.3, 0.4]), torch.zeros(3, 3),
        ...                       positions, torch.tensor([[0, 1]]), torch.tensor([1.0]))
        >>> round(float((charges * potential).sum()), 6)  # −erf(1/(√2·0.5))
        -0.9545
    """

    def __init__(self, calculator: torch.nn.Module, self_energy: bool = False):
        super().__init__()
        check_coulomb(calculator)
        self.calculator = calculator
        self.self_energy = self_energy
        self.full_neighbor_list = bool(calculator.full_neighbor_list)
        # only a reciprocal-space sum drops the k = 0 term the differences restore
        self.reciprocal = calculator.potential.smearing is not None

    def forward(
        self,
        charges: torch.Tensor,
        widths: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
        pair_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``(N, C)`` potentials of ``(N, C)`` charges of ``(N,)`` widths ``σ_i >
        0``; the other arguments as for the calculator (``neighbor_indices``
        pairs within a cutoff several ``√2·γ_max``, see the module docstring;
        a net charge for clusters and 3-D periodic systems only)."""
        _validate_parameters(
            charges, cell, positions, neighbor_indices, neighbor_distances,
            periodic, pair_mask, cell_required=False,
        )  # fmt: skip
        check_widths(widths, positions)
        n_periodic = count_periodic(periodic)
        if n_periodic == 1 or n_periodic == 2:
            check_neutral(charges.sum(dim=0, keepdim=True), charges.abs().sum())
        return self.potentials(
            charges, widths, cell, positions, neighbor_indices,
            neighbor_distances, periodic, pair_mask, n_periodic,
        )  # fmt: skip

    def potentials(
        self,
        charges: torch.Tensor,
        widths: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        periodic: Optional[torch.Tensor],
        pair_mask: Optional[torch.Tensor],
        n_periodic: int,
    ) -> torch.Tensor:
        """:meth:`forward` on checked inputs (a solver checks once and calls this
        every iteration)."""
        point = self.calculator(
            charges, cell, positions, neighbor_indices, neighbor_distances,
            periodic, pair_mask=pair_mask,
        )  # fmt: skip
        potential = point + self._difference(
            charges, widths, neighbor_indices, neighbor_distances, pair_mask
        )
        if self.reciprocal and n_periodic == 3:
            factor = math.pi / torch.abs(torch.linalg.det(cell)).reshape(1)
            atoms = torch.zeros_like(widths, dtype=torch.int64)
            potential = potential + self._background(charges, widths, atoms, factor)
        return potential

    @torch.jit.unused
    def forward_batch(
        self,
        charges: torch.Tensor,
        widths: torch.Tensor,
        cells: torch.Tensor,
        positions: torch.Tensor,
        system_index: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        periodic: Optional[torch.Tensor] = None,
        pair_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """:meth:`forward` of systems packed along the atom axis, as the
        calculator's ``forward_batch`` (``cells (B, 3, 3)``, ``system_index
        (N,)``, ``periodic (B, 3)``); each system gets its own result."""
        check_widths(widths, positions)
        point = self.calculator.forward_batch(
            charges, cells, positions, system_index, neighbor_indices,
            neighbor_distances, periodic, pair_mask,
        )  # fmt: skip
        n_systems = cells.shape[0]
        if periodic is None:
            crystal = torch.ones(n_systems, dtype=torch.bool, device=cells.device)
        else:
            counts = periodic.sum(dim=1)
            crystal = counts == 3
            net = _per_system(charges, system_index, n_systems)
            check_neutral(net[(counts == 1) | (counts == 2)], charges.abs().sum())
        potential = point + self._difference(
            charges, widths, neighbor_indices, neighbor_distances, pair_mask
        )
        if self.reciprocal:
            volume = torch.where(crystal, torch.abs(torch.linalg.det(cells)), 1.0)
            factor = torch.where(crystal, math.pi / volume, 0.0)
            potential = potential + self._background(
                charges, widths, system_index, factor
            )
        return potential

    def _difference(
        self,
        charges: torch.Tensor,
        widths: torch.Tensor,
        neighbor_indices: torch.Tensor,
        neighbor_distances: torch.Tensor,
        pair_mask: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """The pairs' ``−erfc(r/√2γ_ij)/r`` (and the own energy), ``(N, C)``."""
        if torch.jit.is_scripting():
            first, second = neighbor_indices[:, 0], neighbor_indices[:, 1]
        else:
            first, second = columns(neighbor_indices)
            neighbor_indices = indices_of(neighbor_indices)
        spread = torch.sqrt(2.0 * (widths[first] ** 2 + widths[second] ** 2))
        difference = -torch.erfc(neighbor_distances / spread) / neighbor_distances
        if pair_mask is not None:
            difference = torch.where(pair_mask, difference, 0.0)
        prefactor = self.calculator.potential.prefactor.to(charges.dtype)
        potential = pair_sum(
            charges, neighbor_indices, difference, self.full_neighbor_list
        )
        if self.self_energy:
            potential = potential + charges / (
                2.0 * math.sqrt(math.pi) * widths.unsqueeze(1)
            )
        return prefactor * potential

    def _background(
        self,
        charges: torch.Tensor,
        widths: torch.Tensor,
        system_index: torch.Tensor,
        factor: torch.Tensor,
    ) -> torch.Tensor:
        """The ``k = 0`` terms ``−2πγ_ij²/V`` of the differences that a
        reciprocal-space sum drops, for ``E = Σ q_i V_i``: ``(π/V) (Q σ_i² +
        Σ_j q_j σ_j²)`` per atom, with ``factor = π/V`` per system (0 where the
        system is not 3-D periodic)."""
        n_systems = factor.shape[0]
        squared = (widths**2).unsqueeze(1)
        net = _per_system(charges, system_index, n_systems)[system_index]
        weighted = _per_system(charges * squared, system_index, n_systems)
        shift = net * squared + weighted[system_index]
        prefactor = self.calculator.potential.prefactor.to(charges.dtype)
        return prefactor * factor.to(charges.dtype)[system_index].unsqueeze(1) * shift


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
    """Per-atom potentials ``V_i`` of Gaussian charges (``E = Σ q_i V_i``): the
    function form of :class:`GaussianCharges`.

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
        self_energy: include the Gaussians' own energy ``q_i²/(2√π σ_i)`` (what
            :func:`torchpme.qeq.equilibrate` includes by default).

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
    gaussians = GaussianCharges(calculator, self_energy)
    return gaussians(
        charges, widths, cell, positions, neighbor_indices, neighbor_distances,
        periodic,
    )  # fmt: skip


def check_coulomb(calculator: torch.nn.Module) -> None:
    """A calculator of a Coulomb potential (Gaussian charges obey Coulomb's law)."""
    if not isinstance(getattr(calculator, "potential", None), CoulombPotential):
        raise TypeError(
            message(
                "calculator",
                "a calculator with a CoulombPotential (Gaussian charges interact by "
                "Coulomb's law)",
                type(getattr(calculator, "potential", None)).__name__,
            )
        )


def check_widths(widths: torch.Tensor, positions: torch.Tensor) -> None:
    """``(N,)`` finite widths ``> 0`` of the dtype and device of the positions."""
    check_shape("widths", widths, [positions.shape[0]], "(N,) with N atoms")
    check_like("widths", widths, positions, "positions")
    check_finite("widths", widths)
    if not bool((widths > 0).all()):
        raise ValueError(message("widths", "> 0", "widths <= 0"))


def check_neutral(net: torch.Tensor, scale: torch.Tensor) -> None:
    """Refuse net charges ``net`` (relative to ``scale``) of wires or slabs."""
    if bool((net.abs() > 1e-12 * scale).any()):
        raise ValueError(
            message(
                "charges",
                "neutral for a wire or slab of Gaussian charges",
                "a net charge of " + str(float(net.abs().max())),
            )
        )


def _per_system(
    values: torch.Tensor, system_index: torch.Tensor, n_systems: int
) -> torch.Tensor:
    """``(B, C)`` sums of ``(N, C)`` values over each system's atoms."""
    out = torch.zeros(
        (n_systems, values.shape[1]), dtype=values.dtype, device=values.device
    )
    return out.index_add(0, system_index, values)
